"""torch trains on the kit's data order: TRL's trainer takes :class:`PlanSampler` through the transformers hook,
epoch e gets permutation e, and the micro-batches are the kit plan's (what MLX trains on)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mindprint_interfaces import MindprintError
from mindprint_kit.schedule import epoch_order, plan_steps
from mindprint_torch import PyTorchModel, TorchBackend
from mindprint_torch._compat import transformers as transformers_compat
from mindprint_torch.callbacks import FiniteLossMixin
from mindprint_torch.sampler import PlanSampler

pytestmark = pytest.mark.torch


def test_the_sampler_walks_the_kit_epochs() -> None:
    sampler = PlanSampler(7, seed=3)
    assert len(sampler) == 7
    first, second = list(sampler), list(sampler)  # without set_epoch: the next epoch each time
    assert first == epoch_order(7, 3, 0) and second == epoch_order(7, 3, 1) and first != second
    sampler.set_epoch(0)
    assert list(sampler) == first
    assert list(PlanSampler(7, seed=3, shuffle=False)) == list(range(7))
    # the plan's micro-batches are consecutive slices of these orders
    plan = [ix for step in plan_steps(7, 2, 2, 4, 3) for mb in step.micro_batches for ix in mb]
    assert plan == first + second[:len(plan) - 7]


def _trained_rows(monkeypatch: pytest.MonkeyPatch) -> list[list[list[int]]]:
    batches: list[list[list[int]]] = []
    original = FiniteLossMixin.training_step

    def training_step(trainer: Any, model: Any, inputs: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        batches.append([row[m.bool()].tolist() for row, m in zip(ids, mask, strict=True)])
        return original(trainer, model, inputs, *args, **kwargs)

    monkeypatch.setattr(FiniteLossMixin, "training_step", training_step)
    return batches


def test_sft_trains_on_the_kit_plan(backend: TorchBackend, tiny: PyTorchModel, sft_records: list[dict[str, Any]],
                                    tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    batches = _trained_rows(monkeypatch)
    config = {"per_device_batch_size": 2, "gradient_accumulation_steps": 2, "max_steps": 3, "seed": 11,
              "learning_rate": 1e-3, "output_dir": str(tmp_path)}
    trainer: Any = backend.create_sft_trainer(tiny, config)
    assert trainer.train(sft_records).success
    hf = trainer.trl_trainer
    assert hf.sampler_hook_calls == 1, "TRL's trainer did not take its sampler from the hook"
    assert [e for e, _ in hf.train_sampler.orders] == [0, 1]  # 8 examples, 4 per step: epoch 1 at step 3
    ids = [list(r) for r in hf.train_dataset["input_ids"]]
    seen = [[ids.index(row) for row in batch] for batch in batches]
    planned = [list(mb) for step in plan_steps(8, 2, 2, 3, 11) for mb in step.micro_batches]
    assert seen == planned


def test_kto_keeps_the_data_order(backend: TorchBackend, tiny: PyTorchModel, tmp_path: Path) -> None:
    records = [{"prompt": f"Is {i} even?", "completion": "yes" if i % 2 == 0 else "no", "label": i % 2 == 0}
               for i in range(4)]
    trainer: Any = backend.create_trainer("kto", tiny, {"per_device_batch_size": 2, "max_steps": 2, "seed": 5,
                                                        "learning_rate": 1e-3, "output_dir": str(tmp_path)})
    result = trainer.train(records)
    assert result.success, result.error_message
    assert trainer.trl_trainer.train_sampler.orders == [(0, [0, 1, 2, 3])]


def test_a_trainer_without_the_sampler_hook_fails_clearly(backend: TorchBackend, tiny: PyTorchModel,
                                                          sft_records: list[dict[str, Any]], tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers import Trainer

    monkeypatch.delattr(Trainer, transformers_compat.SAMPLER_HOOK)
    assert not next(p for p in transformers_compat.fast_paths()).available
    with pytest.raises(MindprintError, match="needs transformers >=5.24,<6"):
        transformers_compat.require_train_sampler_hook()
    result = backend.create_sft_trainer(tiny, {"max_steps": 1, "output_dir": str(tmp_path)}).train(sft_records)
    assert not result.success
    assert "needs transformers" in (result.error_message or "")
