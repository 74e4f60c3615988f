"""A folder that is not a model: the same one-line ConfigError (folder + what is missing) on both backends (#21).

transformers alone answers a directory without tokenizer files with a long error about sentencepiece, and one
with a broken weight file deep in its loader; both backends run the kit's checks first.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mindprint_interfaces import ConfigError, create_backend
from tools.tiny_model import build_tiny_llama


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tiny")
    build_tiny_llama(out)
    return out


def _cases(tiny: Path, tmp_path: Path) -> dict[str, tuple[Path, str]]:
    readme = tmp_path / "notes"
    readme.mkdir()
    (readme / "README.md").write_text("not a model\n")
    no_tok = tmp_path / "no_tokenizer"
    no_tok.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(tiny / name, no_tok / name)
    broken = tmp_path / "broken"
    shutil.copytree(tiny, broken)
    (broken / "model.safetensors").write_bytes(b"\x00" * 4)
    return {"readme": (readme, "config.json missing"), "no tokenizer": (no_tok, "no tokenizer"),
            "broken weights": (broken / "model.safetensors", "not a valid safetensors file")}


@pytest.mark.parametrize("backend", ["pytorch", "mlx"])
def test_not_a_model_is_one_line_naming_the_folder(backend: str, tiny: Path, tmp_path: Path) -> None:
    if backend == "mlx":
        pytest.importorskip("mlx_lm")
    b = create_backend(backend, device="cpu")
    for name, (where, what) in _cases(tiny, tmp_path).items():
        with pytest.raises(ConfigError) as info:
            b.load_model(where.parent if name == "broken weights" else where)
        message = str(info.value)
        assert str(where) in message and what in message, (name, message)
        assert "\n" not in message and "sentencepiece" not in message, (name, message)
