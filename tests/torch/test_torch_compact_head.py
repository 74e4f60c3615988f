"""The compact LM head (mindprint_torch.compact_head): TRL's values, computed on the labelled rows only."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from mindprint_torch import PyTorchModel, TorchBackend, compact_head

pytestmark = pytest.mark.torch

COMPARED = ("loss", "grad_norm", "entropy", "mean_token_accuracy", "rewards/chosen", "rewards/rejected",
            "rewards/margins", "logps/chosen", "logps/rejected", "logits/chosen", "logits/rejected")


def _head_rows(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Spy on TRL's chunked log-prob function: how many hidden-state rows each call projects."""
    from trl.kernels import ChunkedLogProbFunction

    rows: list[int] = []
    original = ChunkedLogProbFunction.apply

    def apply(hidden: torch.Tensor, *args: Any) -> Any:
        rows.append(int(hidden.reshape(-1, hidden.shape[-1]).shape[0]))
        return original(hidden, *args)

    monkeypatch.setattr(ChunkedLogProbFunction, "apply", staticmethod(apply))
    return rows


def _run(make: Callable[[], Any], records: list[dict[str, Any]]) -> tuple[Any, Any]:
    trainer = make()
    result = trainer.train(records)
    assert result.success, result.error_message
    return trainer, result


def _same_history(a: list[dict[str, float]], b: list[dict[str, float]]) -> None:
    assert len(a) == len(b) > 0
    for step_a, step_b in zip(a, b):
        for key in COMPARED:
            if key in step_a:
                assert step_a[key] == pytest.approx(step_b[key], rel=1e-5, abs=1e-6), (step_a["step"], key)


@pytest.mark.parametrize("task", ["sft", "dpo"])
def test_same_training_as_trl_head_with_fewer_rows(task: str, backend: TorchBackend,
                                                   load_tiny: Callable[[], PyTorchModel],
                                                   sft_records: list[dict[str, Any]],
                                                   easy_pairs: list[dict[str, Any]], tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    records = sft_records if task == "sft" else easy_pairs
    config = {"learning_rate": 5e-3, "max_steps": 4, "per_device_batch_size": 4, "seed": 0}

    def make(out: str) -> Callable[[], Any]:
        create = backend.create_sft_trainer if task == "sft" else backend.create_dpo_trainer
        return lambda: create(load_tiny(), {**config, "output_dir": str(tmp_path / out)})

    rows = _head_rows(monkeypatch)
    compact, compact_result = _run(make("compact"), records)
    compact_rows = list(rows)
    assert compact.trl_trainer.compact_head is True

    rows.clear()
    monkeypatch.setattr(compact_head, "install", lambda model: False)  # TRL's own head, every position scored
    plain, plain_result = _run(make("plain"), records)
    assert plain.trl_trainer.compact_head is False

    _same_history(compact_result.metrics["history"], plain_result.metrics["history"])
    # the work saved: TRL scores every position of the padded batch on CPU, the compact head only labelled ones
    # (the compact run's first calls are the probe's: TRL's head and the compact one on a 2x12 batch)
    training_rows = compact_rows[-len(rows):]
    assert compact_rows[:2] == [22, 11] and sum(training_rows) < 0.8 * sum(rows), (compact_rows, rows)


def test_probe_refuses_a_head_that_disagrees(tiny: PyTorchModel, backend: TorchBackend,
                                             sft_records: list[dict[str, Any]], tmp_path: Path) -> None:
    trainer = backend.create_sft_trainer(tiny, {"max_steps": 1, "output_dir": str(tmp_path)})
    assert trainer.train(sft_records).success
    model = tiny.hf_model.get_base_model()
    ours = model.__dict__["forward"]

    def skewed(**kwargs: Any) -> Any:
        out = ours(**kwargs)
        out.log_probs = out.log_probs * 1.01
        return out

    assert compact_head._agrees(model, ours, ours, ("log_probs", "entropy", "is_top1"))
    assert not compact_head._agrees(model, ours, skewed, ("log_probs", "entropy", "is_top1"))


def test_a_model_trl_did_not_patch_is_left_alone(tiny: PyTorchModel) -> None:
    model = tiny.hf_model
    assert "forward" not in model.__dict__
    assert compact_head.install(model) is False
    assert "forward" not in model.__dict__
