"""Model directories: safetensors only (never pickle), no remote code — the check both backends run first (#20)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mindprint_interfaces import ConfigError
from mindprint_kit.model_dir import check_model_dir, check_tokenizer_dir

REAL = "<a real safetensors file>"


def _dir(tmp_path: Path, files: dict[str, str], config: dict[str, object] | None = None) -> Path:
    d = tmp_path / "model"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(config if config is not None else {"model_type": "llama"}))
    for name, text in files.items():
        if text == REAL:
            _real_safetensors(d / name)
        else:
            (d / name).write_text(text)
    return d


def _real_safetensors(path: Path) -> None:
    import numpy as np
    from safetensors.numpy import save_file

    save_file({"w": np.zeros((2, 2), dtype=np.float32)}, str(path))


def known(model_type: str) -> bool:
    return model_type == "llama"


def test_safetensors_pass(tmp_path: Path) -> None:
    check_model_dir(_dir(tmp_path, {"model.safetensors": REAL, "pytorch_model.bin": "x"}), known_model_type=known)


def test_pickle_only_is_refused(tmp_path: Path) -> None:
    d = _dir(tmp_path, {"pytorch_model.bin": "x"})
    with pytest.raises(ConfigError, match="holds only pickle weights \\(pytorch_model.bin\\)") as info:
        check_model_dir(d, known_model_type=known)
    assert info.value.key == "model_path"


def test_no_weights_and_no_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no model weights"):
        check_model_dir(_dir(tmp_path, {}), known_model_type=known)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match="config.json missing"):
        check_model_dir(empty, known_model_type=known)


def test_remote_code_is_refused_unless_the_type_is_built_in(tmp_path: Path) -> None:
    auto_map = {"AutoModelForCausalLM": "modeling.X"}
    remote = _dir(tmp_path, {"model.safetensors": REAL}, {"model_type": "custom", "auto_map": auto_map})
    with pytest.raises(ConfigError, match="never runs remote code"):
        check_model_dir(remote, known_model_type=known)
    (remote / "config.json").write_text(json.dumps({"model_type": "llama", "auto_map": auto_map}))
    check_model_dir(remote, known_model_type=known)  # a built-in type: transformers ignores auto_map


def test_a_config_without_model_type_is_named(tmp_path: Path) -> None:
    d = _dir(tmp_path, {"model.safetensors": REAL}, {"hidden_size": 8})
    with pytest.raises(ConfigError, match="config.json: no model_type"):
        check_model_dir(d, known_model_type=known)


def test_a_broken_weight_file_is_named(tmp_path: Path) -> None:
    d = _dir(tmp_path, {"model.safetensors": "not a safetensors file"})
    with pytest.raises(ConfigError, match=r"model.safetensors: not a valid safetensors file"):
        check_model_dir(d, known_model_type=known)


def test_a_directory_without_tokenizer_files_is_named(tmp_path: Path) -> None:
    d = _dir(tmp_path, {"model.safetensors": REAL})
    with pytest.raises(ConfigError, match=r"model: no tokenizer \(tokenizer.json"):
        check_tokenizer_dir(d)
    for name in ("tokenizer.json", "tokenizer.model", "vocab.json", "o200k.tiktoken"):
        other = tmp_path / name.replace(".", "_")
        other.mkdir()
        (other / name).write_text("{}")
        check_tokenizer_dir(other)
