from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import torch

from mindprint_interfaces import BaseCallback, ConfigError, DataValidationError, Trainer
from mindprint_interfaces.adapter_format import PEFT_WEIGHTS
from mindprint_interfaces.data import as_sft_examples, tokenize_sft
from mindprint_torch import PyTorchModel, TorchBackend, TorchSFTTrainer

pytestmark = pytest.mark.torch


class Recorder(BaseCallback):
    def __init__(self) -> None:
        self.steps: list[tuple[int, dict[str, float]]] = []
        self.saves: list[Path] = []

    def on_step(self, step: int, metrics: Mapping[str, float]) -> None:
        self.steps.append((step, dict(metrics)))

    def on_save(self, path: Path) -> None:
        self.saves.append(path)


def _cfg(tmp_path: Path, **kw: Any) -> dict[str, Any]:
    return {"learning_rate": 3e-3, "num_epochs": 3, "per_device_batch_size": 2, "lora_r": 8, "lora_alpha": 16,
            "output_dir": str(tmp_path), "seed": 0, **kw}


def test_sft_lowers_loss_and_reports(backend: TorchBackend, tiny: PyTorchModel, sft_records: list[dict[str, Any]],
                                     tmp_path: Path) -> None:
    rec = Recorder()
    trainer = backend.create_sft_trainer(tiny, _cfg(tmp_path), callbacks=[rec])
    assert isinstance(trainer, Trainer)
    before = tiny.forward(*_batch(tiny, sft_records)).loss
    result = trainer.train(sft_records)
    after = tiny.forward(*_batch(tiny, sft_records)).loss
    assert result.success, result.error_message
    assert before is not None and after is not None and after < before - 0.3
    assert result.samples_trained == len(sft_records)
    assert result.metrics["samples_seen"] == 3 * len(sft_records)
    assert [s for s, _ in rec.steps] == list(range(1, 13))  # 8 examples / bs 2 * 3 epochs, logged every step
    assert result.final_loss == pytest.approx(rec.steps[-1][1]["loss"])
    for key in ("loss", "learning_rate", "grad_norm"):
        assert key in result.metrics and math.isfinite(result.metrics[key])
    assert len(result.metrics["history"]) == 12
    assert result.adapter_path == str(tmp_path / "adapter") and (tmp_path / "adapter" / PEFT_WEIGHTS).is_file()
    assert rec.saves == [tmp_path / "adapter"]
    assert tiny.has_adapter()


def _batch(model: PyTorchModel, records: list[dict[str, Any]]) -> tuple[list[list[int]], list[list[int]]]:
    data = tokenize_sft(model.tokenizer, as_sft_examples(records), max_length=1024)
    return [list(e.input_ids) for e in data.examples], [list(e.labels) for e in data.examples]


def test_trl_gets_our_labels_and_forced_settings(backend: TorchBackend, tiny: PyTorchModel,
                                                 sft_records: list[dict[str, Any]], tmp_path: Path) -> None:
    trainer = backend.create_sft_trainer(tiny, _cfg(tmp_path, max_steps=1, warmup_steps=1, lr_scheduler="cosine",
                                                    weight_decay=0.01, max_grad_norm=0.5, adam_beta2=0.99,
                                                    gradient_accumulation_steps=2))
    assert trainer.train(sft_records).success
    trl = trainer.trl_trainer
    ids, labels = _batch(tiny, sft_records)
    assert trl.train_dataset["input_ids"] == ids
    assert trl.train_dataset["labels"] == labels  # TRL trains on the data layer's completion-only mask
    assert labels[0][0] == -100 and any(t != -100 for t in labels[0])
    args = trl.args
    assert (args.bf16, args.fp16, args.gradient_checkpointing) == (False, False, False)
    assert args.save_strategy == "no" and args.report_to in ([], "none", ["none"]) and args.disable_tqdm
    assert (args.warmup_steps, args.lr_scheduler_type.value, args.weight_decay, args.max_grad_norm) == (1, "cosine", 0.01, 0.5)
    assert (args.adam_beta2, args.gradient_accumulation_steps, args.seed) == (0.99, 2, 0)


def test_full_sequence_loss_when_asked(backend: TorchBackend, tiny: PyTorchModel, sft_records: list[dict[str, Any]],
                                       tmp_path: Path) -> None:
    trainer = backend.create_sft_trainer(tiny, _cfg(tmp_path, max_steps=1, completion_only_loss=False))
    assert trainer.train(sft_records).success
    assert trainer.trl_trainer.train_dataset["labels"] == trainer.trl_trainer.train_dataset["input_ids"]


def test_truncation_happens_before_trl(backend: TorchBackend, tiny: PyTorchModel, tmp_path: Path) -> None:
    records = [{"instruction": "Say something long", "output": "a b c d e f g h i j k l m n o p " * 4}] * 2
    trainer = backend.create_sft_trainer(tiny, _cfg(tmp_path, max_steps=1, max_length=48))
    result = trainer.train(records)
    assert result.success and result.metrics["truncated"] == 2 and result.samples_trained == 2
    assert all(len(r) == 48 for r in trainer.trl_trainer.train_dataset["input_ids"])


def test_invalid_data_and_config_raise_before_training(backend: TorchBackend, tiny: PyTorchModel,
                                                       tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match='did you mean "learning_rate"'):
        backend.create_sft_trainer(tiny, {"learning_rat": 1e-3})
    trainer = backend.create_sft_trainer(tiny, _cfg(tmp_path))
    with pytest.raises(DataValidationError) as info:
        trainer.train([{"instruction": "ok", "output": "fine"}, {"instruction": "no answer"}, {"question": 3, "answer": "x"}])
    assert [i.line for i in info.value.issues] == [2, 3]
    with pytest.raises(ConfigError, match="topic_id"):
        trainer.train_on_topic([{"instruction": "ok", "output": "fine"}], "../escape")
    assert not tiny.has_adapter() and not (tmp_path / "adapter").exists()


def test_train_on_topic_and_failure_keeps_last_good_adapter(backend: TorchBackend, tiny: PyTorchModel,
                                                            sft_records: list[dict[str, Any]], tmp_path: Path) -> None:
    good = backend.create_sft_trainer(tiny, _cfg(tmp_path, num_epochs=1)).train_on_topic(sft_records, "u1/c1/t1")
    target = tmp_path / "u1" / "c1" / "t1"
    assert good.success and good.adapter_path == str(target)
    saved = (target / PEFT_WEIGHTS).read_bytes()
    live = {n: p.detach().clone() for n, p in tiny.hf_model.named_parameters() if "lora_" in n}
    # An absurd learning rate blows the weights up: the loss turns non-finite within a few steps.
    bad = backend.create_sft_trainer(tiny, _cfg(tmp_path, learning_rate=1e30, num_epochs=2))
    result = bad.train_on_topic(sft_records, "u1/c1/t1")
    assert not result.success
    assert result.error_message is not None and "non-finite" in result.error_message
    assert (target / PEFT_WEIGHTS).read_bytes() == saved  # the last good adapter is still on disk
    for name, param in tiny.hf_model.named_parameters():  # and the live model is back to it
        if name in live:
            assert torch.equal(param, live[name]), name
    assert math.isfinite(tiny.forward([[5, 6, 7]]).logits.abs().max().item())


def test_sft_continues_an_existing_adapter(backend: TorchBackend, load_tiny: Callable[[], PyTorchModel],
                                           sft_records: list[dict[str, Any]], tmp_path: Path) -> None:
    model = load_tiny()
    first = backend.create_sft_trainer(model, _cfg(tmp_path, num_epochs=1)).train(sft_records)
    second = TorchSFTTrainer(model, _cfg(tmp_path, num_epochs=1)).train(sft_records)
    assert second.success and second.metrics["history"][0]["loss"] < first.metrics["history"][0]["loss"]


def test_periodic_saves(backend: TorchBackend, tiny: PyTorchModel, sft_records: list[dict[str, Any]],
                        tmp_path: Path) -> None:
    rec = Recorder()
    result = backend.create_sft_trainer(tiny, _cfg(tmp_path, max_steps=4, save_steps=2), callbacks=[rec]).train(sft_records)
    assert result.success and rec.saves == [tmp_path / "adapter"] * 3  # steps 2, 4 and the final save
