"""Bridge from transformers' TrainerCallback to mindprint's ``on_step(step, metrics)`` / ``on_save(path)``.

Also the guard that turns a non-finite loss or gradient norm into :class:`TrainingError`, which the
trainers convert into ``TrainingResult(success=False)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from transformers import TrainerCallback

from mindprint_interfaces import TrainingError
from mindprint_interfaces.callback_dispatch import notify_step
from mindprint_interfaces.protocols import TrainerCallback as MindprintCallback

from . import distributed

SUMMARY_KEYS = ("train_runtime", "train_samples_per_second", "train_steps_per_second", "train_loss", "total_flos")


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def is_world_process_zero(state: Any) -> bool:
    return bool(getattr(state, "is_world_process_zero", True)) and distributed.is_main_process()


class ProgressBridge(TrainerCallback):
    """Collects TRL's logged metrics (history) and forwards them to the user's callbacks."""

    def __init__(self, callbacks: Sequence[MindprintCallback], *, save_steps: int = 0,
                 on_checkpoint: Callable[[int], None] | None = None,
                 history: list[dict[str, float]] | None = None) -> None:
        self.callbacks = list(callbacks)
        self.history: list[dict[str, float]] = history if history is not None else []
        self.summary: dict[str, float] = {}
        self.save_steps = save_steps
        self.on_checkpoint = on_checkpoint
        self.save_due = -1  # the step whose save waits for its log (a checkpoint holds that step's metrics)

    def on_log(self, args: Any, state: Any, control: Any, logs: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        if not logs:
            return
        numbers = {k: v for k, v in ((k, _number(v)) for k, v in logs.items()) if v is not None}
        if any(k in numbers for k in SUMMARY_KEYS) and "loss" not in numbers:
            self.summary.update(numbers)
            return
        if "loss" not in numbers:
            return
        for key in ("loss", "grad_norm"):
            if key in numbers and not math.isfinite(numbers[key]):
                raise TrainingError(f"non-finite {key} ({numbers[key]}) at step {state.global_step}")
        entry = {"step": float(state.global_step), **numbers}
        self.history.append(entry)  # every rank keeps the (global, already gathered) metrics
        if is_world_process_zero(state):  # under DDP only rank 0 talks to the user's callbacks
            notify_step(self.callbacks, int(state.global_step), numbers)
        self.save_if_due(state)

    def save_if_due(self, state: Any) -> None:
        if self.save_due == int(state.global_step) and self.on_checkpoint is not None:
            self.save_due = -1
            self.on_checkpoint(int(state.global_step))

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.save_steps > 0 and self.on_checkpoint is not None and state.global_step % self.save_steps == 0:
            self.save_due = int(state.global_step)
            control.should_log = True  # the save happens in on_log, after this step's metrics are recorded


class FiniteLossMixin:
    """Mixed into the TRL trainer subclasses: abort on a non-finite micro-batch loss, count samples."""

    samples_seen: int = 0
    samples_per_row: int = 1  # DPO batches hold chosen + rejected rows
    rows_key: str = "input_ids"  # the batch entry whose first dimension counts rows (ORPO/CPO: chosen_input_ids)

    def training_step(self, model: Any, inputs: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        loss = super().training_step(model, inputs, *args, **kwargs)  # type: ignore[misc]
        value = float(loss.detach().float().item())
        if not math.isfinite(value):
            raise TrainingError(f"non-finite loss ({value}) at step {self.state.global_step + 1}")  # type: ignore[attr-defined]
        rows = int(inputs[self.rows_key].shape[0])
        # every DDP rank trains a micro-batch of the same size at once: count the global presentations
        self.samples_seen += rows // self.samples_per_row * distributed.world_size()
        return loss
