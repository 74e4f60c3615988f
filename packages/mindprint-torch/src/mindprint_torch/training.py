"""What SFT and DPO trainers share: TRL argument mapping, the run/failure protocol, adapter saving.

The run protocol (``train`` / ``train_on_topic``):
1. validate + tokenize the data with the shared data layer (raises DataValidationError / ConfigError — before any work);
2. make sure the model has a LoRA adapter, snapshot its weights;
3. run TRL; a failure (non-finite loss, OOM, any runtime error) restores the last good weights in memory,
   leaves the last good adapter on disk untouched and returns ``TrainingResult(success=False)``;
4. on success save the adapter atomically to the target directory and report it.

Under ``torchrun`` / ``accelerate launch`` TRL trains with DDP (see :mod:`.distributed`): only rank 0
writes adapters (the others wait at a barrier) and calls the user's callbacks.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Generic, TypeVar

import torch
from transformers.trainer_callback import PrinterCallback

from mindprint_interfaces import ConfigError, MindprintError, TrainingResult
from mindprint_interfaces.callbacks import CallbackRaised, original_callback_errors
from mindprint_interfaces.configs import _TrainConfigBase
from mindprint_interfaces.protocols import PathLike, TrainerCallback

from . import distributed
from .adapters import add_adapter, save_adapter
from .callbacks import ProgressBridge
from .model import PyTorchModel

C = TypeVar("C", bound=_TrainConfigBase)
_TOPIC_RE = re.compile(r"^[A-Za-z0-9_.\-]+(/[A-Za-z0-9_.\-]+)*$")


def common_args(config: _TrainConfigBase, model: PyTorchModel) -> dict[str, Any]:
    """TrainingArguments shared by SFT and DPO. Every mindprint field is mapped; TRL defaults that change
    results silently (bf16, gradient checkpointing, logging every 10 steps, fused AdamW) are set explicitly."""
    warmup: float = float(config.warmup_steps) if config.warmup_steps > 0 else float(config.warmup_ratio)
    return {
        "output_dir": str(Path(config.output_dir)),
        "learning_rate": config.learning_rate,
        "num_train_epochs": float(config.num_epochs),
        "max_steps": config.max_steps,
        "per_device_train_batch_size": config.per_device_batch_size,
        "gradient_accumulation_steps": config.gradient_accumulation_steps,
        "warmup_steps": warmup,  # transformers 5: >= 1 is a step count, < 1 a ratio
        "lr_scheduler_type": config.lr_scheduler,
        "seed": config.seed,
        "data_seed": config.seed,
        "weight_decay": config.weight_decay,
        "max_grad_norm": config.max_grad_norm,
        "adam_beta1": config.adam_beta1,
        "adam_beta2": config.adam_beta2,
        "adam_epsilon": config.adam_epsilon,
        "optim": "adamw_torch",
        "logging_strategy": "steps",
        "logging_steps": config.logging_steps,
        "save_strategy": "no",  # we save adapters ourselves, atomically
        "report_to": "none",
        "disable_tqdm": True,
        "bf16": False,
        "fp16": False,
        **_checkpointing_off(),
        "use_cpu": model.device == "cpu",
        "dataloader_num_workers": 0,
        "dataloader_pin_memory": False,
        "max_length": config.max_length,
        **distributed.ddp_args(model.device),
    }


@contextlib.contextmanager
def quiet_datasets() -> Iterator[None]:
    """Silence the datasets progress bars TRL's dataset preparation would print."""
    import datasets

    enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if enabled:
            datasets.enable_progress_bars()


def _checkpointing_off() -> dict[str, Any]:
    """Gradient (activation) checkpointing off; transformers >= 5.x renamed the field, TRL defaults it to True."""
    import dataclasses

    from transformers import TrainingArguments

    names = {f.name for f in dataclasses.fields(TrainingArguments)}
    flags = {"gradient_checkpointing": False}
    if "activation_checkpointing" in names:
        flags["activation_checkpointing"] = False
    return flags


def validate_topic_id(topic_id: str) -> str:
    if not isinstance(topic_id, str) or not _TOPIC_RE.match(topic_id) or ".." in topic_id.split("/"):
        raise ConfigError(f"topic_id: must look like 'unit/chapter/topic' (letters, digits, _ . -), got {topic_id!r}",
                          key="topic_id")
    return topic_id


class TorchTrainerBase(Generic[C]):
    """Shared Trainer-protocol implementation; subclasses provide ``_prepare`` and ``_build``."""

    config: C

    def __init__(self, model: PyTorchModel, config: C, callbacks: Sequence[TrainerCallback] = ()) -> None:
        self._model = model
        self.config = config
        self.callbacks = list(callbacks)
        self.trl_trainer: Any = None  # the last TRL trainer (for inspection)
        self.last_result: TrainingResult | None = None

    # -- Trainer protocol ------------------------------------------------------------------------------------------
    def get_model(self) -> PyTorchModel:
        return self._model

    def save_adapter(self, path: PathLike) -> Path:
        """Save the adapter (PEFT layout). Under a DDP launcher call it on every rank: rank 0 writes, all wait."""
        out = self._save(Path(path))
        ProgressBridge(self.callbacks).notify_save(out)
        return out

    def batch_gradients(self, train_data: Sequence[Mapping[str, Any]]) -> tuple[float, dict[str, Any]]:
        """Loss and all-reduced gradients (numpy, PEFT names) of one step over all of ``train_data``
        (:func:`mindprint_torch.distributed.batch_gradients`); the adapter weights are left unchanged."""
        return distributed.batch_gradients(self, train_data)

    def _save(self, target: Path) -> Path:
        distributed.on_main_then_wait(lambda: save_adapter(self._model, target))
        return target

    def train(self, train_data: Sequence[Mapping[str, Any]]) -> TrainingResult:
        return self._run(train_data, Path(self.config.output_dir) / "adapter", source="<train_data>")

    def train_on_topic(self, topic_data: Sequence[Mapping[str, Any]], topic_id: str) -> TrainingResult:
        validate_topic_id(topic_id)
        return self._run(topic_data, Path(self.config.output_dir) / topic_id, source=f"<topic {topic_id}>")

    # -- subclass hooks --------------------------------------------------------------------------------------------
    def _prepare(self, data: Sequence[Mapping[str, Any]], source: str) -> tuple[Any, dict[str, Any]]:
        """Validate + tokenize; return (datasets.Dataset, data stats). Raises on invalid data."""
        raise NotImplementedError

    def _build(self, dataset: Any, bridge: ProgressBridge) -> Any:
        """Create the TRL trainer on ``self._model`` (which has an adapter)."""
        raise NotImplementedError

    def _cleanup(self) -> None:
        """Undo trainer-specific model changes (e.g. DPO's frozen reference adapter)."""

    # -- run protocol ----------------------------------------------------------------------------------------------
    def _trainable_state(self) -> dict[str, torch.Tensor]:
        return {n: p.detach().clone() for n, p in self._model.hf_model.named_parameters() if p.requires_grad}

    def _restore(self, state: Mapping[str, torch.Tensor]) -> None:
        params = dict(self._model.hf_model.named_parameters())
        with torch.no_grad():
            for name, value in state.items():
                if name in params:
                    params[name].copy_(value)

    def _run(self, data: Sequence[Mapping[str, Any]], target: Path, *, source: str) -> TrainingResult:
        dataset, stats = self._prepare(data, source)  # invalid data raises here, before any work
        if not self._model.has_adapter():
            add_adapter(self._model, self.config.adapter_config(), seed=self.config.seed)
        good = self._trainable_state()
        saved: list[Path] = []
        start = time.perf_counter()

        def checkpoint(step: int) -> None:
            nonlocal good
            self._save(target)
            good = self._trainable_state()
            saved.append(target)
            bridge.notify_save(target)

        bridge = ProgressBridge(self.callbacks, save_steps=self.config.save_steps, on_checkpoint=checkpoint)
        trainer: Any = None
        try:
            with quiet_datasets():
                trainer = self._build(dataset, bridge)
            trainer.remove_callback(PrinterCallback)  # progress goes through our callbacks, not stdout
            self.trl_trainer = trainer
            output = trainer.train()
        except CallbackRaised as exc:  # the user's callback asked to stop (or failed): restore, then let it through
            self._failed(exc, good, start, trainer, bridge, stats, saved)
            raise exc.original from None
        except MindprintError as exc:
            if isinstance(exc, ConfigError):
                self._cleanup()
                raise
            return self._failed(exc, good, start, trainer, bridge, stats, saved)
        except Exception as exc:  # OOM, NaN, any runtime error: the seed's contract is "report, don't raise"
            return self._failed(exc, good, start, trainer, bridge, stats, saved)
        self._cleanup()
        self._model.hf_model.eval()
        self._save(target)
        with original_callback_errors():
            bridge.notify_save(target)
        elapsed = time.perf_counter() - start
        metrics = self._metrics(bridge, stats, trainer)
        final = bridge.history[-1]["loss"] if bridge.history else float(output.training_loss)
        result = TrainingResult(success=True, final_loss=float(final), training_time_seconds=elapsed,
                                samples_trained=self._samples_trained(trainer, stats), adapter_path=str(target),
                                metrics=metrics)
        self.last_result = result
        return result

    def _failed(self, exc: BaseException, good: Mapping[str, torch.Tensor], start: float, trainer: Any,
                bridge: ProgressBridge, stats: dict[str, Any], saved: list[Path]) -> TrainingResult:
        self._cleanup()
        self._restore(good)  # back to the last good weights (the last checkpoint, or the start of this run)
        self._model.hf_model.eval()
        if isinstance(exc, torch.OutOfMemoryError):
            message = f"out of memory: {exc}"
        else:
            message = f"{type(exc).__name__}: {exc}"
        metrics = self._metrics(bridge, stats, trainer)
        final = bridge.history[-1]["loss"] if bridge.history else float("nan")
        result = TrainingResult(success=False, final_loss=float(final), training_time_seconds=time.perf_counter() - start,
                                samples_trained=self._samples_trained(trainer, stats),
                                adapter_path=str(saved[-1]) if saved else "", error_message=message, metrics=metrics)
        self.last_result = result
        return result

    @staticmethod
    def _samples_trained(trainer: Any, stats: Mapping[str, Any]) -> int:
        """Distinct examples trained on: the tokenized examples (after drops), capped by what was actually seen."""
        seen = int(getattr(trainer, "samples_seen", 0) or 0)
        return min(int(stats.get("num_examples", 0)), seen)

    def _metrics(self, bridge: ProgressBridge, stats: dict[str, Any], trainer: Any) -> dict[str, Any]:
        metrics: dict[str, Any] = {}
        if bridge.history:
            metrics.update({k: v for k, v in bridge.history[-1].items() if k != "step"})
        metrics.update(bridge.summary)
        metrics["history"] = list(bridge.history)
        metrics["global_step"] = int(getattr(getattr(trainer, "state", None), "global_step", 0) or 0)
        metrics["samples_seen"] = int(getattr(trainer, "samples_seen", 0) or 0)  # presentations, counting epochs
        metrics.update(stats)
        return metrics
