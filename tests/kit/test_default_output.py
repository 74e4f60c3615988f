"""train(data) without adapter_dir never writes a fixed ./outputs/adapter silently (#21)."""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path

import pytest

from mindprint_interfaces import DPOConfig, SFTConfig
from mindprint_kit.default_output import default_adapter_dir

NOW = datetime(2026, 12, 2, 0, 45, 0)


def test_default_output_dir_gets_a_fresh_announced_run_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.chdir(tmp_path)
    with caplog.at_level(logging.WARNING, logger="mindprint"):
        first = default_adapter_dir(SFTConfig(), now=NOW)
        second = default_adapter_dir(SFTConfig(), now=NOW)
        third = default_adapter_dir(DPOConfig(), now=NOW)
    assert first == tmp_path / "outputs" / "20261202-004500-sft" / "adapter"
    assert second == tmp_path / "outputs" / "20261202-004500-sft-2" / "adapter"  # never the same directory twice
    assert third == tmp_path / "outputs" / "20261202-004500-dpo" / "adapter"
    assert first.is_absolute()
    assert [str(first) in r.getMessage() for r in caplog.records][:1] == [True]
    assert len(caplog.records) == 3


def test_an_output_dir_the_user_chose_is_used_as_given(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="mindprint"):
        assert default_adapter_dir(SFTConfig(output_dir=str(tmp_path / "out"))) == tmp_path / "out" / "adapter"
    assert not caplog.records


@pytest.mark.torch
def test_a_torch_trainer_without_adapter_dir_writes_into_a_run_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_model_dir: Path) -> None:
    from mindprint_interfaces import create_backend

    monkeypatch.chdir(tmp_path)
    backend = create_backend("pytorch", device="cpu")
    model = backend.load_model(tiny_model_dir)
    trainer = backend.create_sft_trainer(model, SFTConfig(max_steps=1, per_device_batch_size=1, lora_r=2))
    result = trainer.train([{"instruction": "What is two plus two?", "output": "Four."}])
    assert result.success, result.error_message
    adapter = Path(result.adapter_path)
    assert adapter.parent.parent == tmp_path / "outputs" and adapter.parent.name.endswith("-sft")
    assert (adapter / "adapter_model.safetensors").is_file()
    assert not (tmp_path / "outputs" / "adapter").exists()


@pytest.mark.mlx
def test_a_refused_train_leaves_no_empty_run_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       tiny_model_dir: Path) -> None:
    from mindprint_interfaces import DataValidationError, create_backend

    monkeypatch.chdir(tmp_path)
    backend = create_backend("mlx", device="cpu", dtype="float32", seed=0)
    trainer = backend.create_sft_trainer(backend.load_model(tiny_model_dir), {"max_steps": 1})
    with pytest.raises(DataValidationError):
        trainer.train([{"instruction": "no output"}])
    assert list((tmp_path / "outputs").iterdir()) == []
