"""The shared training loop of MLXSFTTrainer and MLXDPOTrainer.

One optimizer step = ``gradient_accumulation_steps`` micro-batches whose *summed* losses and
gradients are divided by the step's normaliser (loss tokens for SFT, pairs for DPO), then
global-norm clipping, then AdamW as the HF Trainer configures it (bias correction on, decoupled
weight decay, betas/eps from the config) at the scheduled LR. Non-finite losses or gradients stop
the run *before* the update, so the model keeps its last good weights.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Generic, TypeVar

import mlx.core as mx
import mlx.optimizers as optim
from mlx.utils import tree_flatten, tree_map

from mindprint_interfaces import ConfigError, MindprintError, TrainingError, TrainingResult
from mindprint_interfaces.configs import _TrainConfigBase
from mindprint_interfaces.protocols import PathLike, TrainerCallback

from . import schedule
from .adapters import save_adapter
from .model import MLXModel

C = TypeVar("C", bound=_TrainConfigBase)
_TOPIC_RE = re.compile(r"^[A-Za-z0-9_.\-]+(/[A-Za-z0-9_.\-]+)*$")


def validate_topic_id(topic_id: str) -> str:
    if not isinstance(topic_id, str) or not _TOPIC_RE.match(topic_id) or ".." in topic_id.split("/"):
        raise ConfigError(f"topic_id: must look like 'unit/chapter/topic' (letters, digits, _ . -), got {topic_id!r}",
                          key="topic_id")
    return topic_id


def make_optimizer(config: _TrainConfigBase) -> Any:
    """AdamW like torch.optim.AdamW under the HF Trainer (mlx's defaults differ: wd 0.01, no bias correction)."""
    return optim.AdamW(learning_rate=config.learning_rate, betas=[config.adam_beta1, config.adam_beta2],
                       eps=config.adam_epsilon, weight_decay=config.weight_decay, bias_correction=True)


def add_trees(a: Any, b: Any) -> Any:
    return b if a is None else tree_map(lambda x, y: x + y, a, b)


class MLXTrainerBase(Generic[C]):
    """Trainer protocol; subclasses implement ``_prepare``, ``_start`` and ``_micro_step``."""

    normaliser_name = "tokens"

    def __init__(self, model: MLXModel, config: C, callbacks: Sequence[TrainerCallback] = ()) -> None:
        self._model = model
        self.config = config
        self.callbacks = list(callbacks)
        self.last_result: TrainingResult | None = None
        if config.lora_layers is not None and any(i >= model.num_layers for i in config.lora_layers):
            raise ConfigError(f"lora_layers {list(config.lora_layers)}: the model has {model.num_layers} layers "
                              f"(0..{model.num_layers - 1})", key="lora_layers")

    # -- Trainer protocol ------------------------------------------------------------------------------------------
    def get_model(self) -> MLXModel:
        return self._model

    def save_adapter(self, path: PathLike) -> Path:
        out = save_adapter(self._model, path)
        self._notify_save(out)
        return out

    def train(self, train_data: Sequence[Mapping[str, Any]]) -> TrainingResult:
        return self._run(train_data, Path(self.config.output_dir) / "adapter", source="<train_data>")

    def train_on_topic(self, topic_data: Sequence[Mapping[str, Any]], topic_id: str) -> TrainingResult:
        validate_topic_id(topic_id)
        return self._run(topic_data, Path(self.config.output_dir) / topic_id, source=f"<topic {topic_id}>")

    # -- subclass hooks --------------------------------------------------------------------------------------------
    def _prepare(self, data: Sequence[Mapping[str, Any]], source: str) -> tuple[list[Any], dict[str, Any]]:
        raise NotImplementedError

    def _start(self, examples: list[Any]) -> None:
        """Work before the first step (DPO: reference log-probs)."""

    def _micro_step(self, examples: list[Any], indices: Sequence[int]) -> tuple[Any, Any, Any, dict[str, Any]]:
        """Return (summed loss, summed grads, normaliser count, summed/aux stats) for one micro-batch."""
        raise NotImplementedError

    def _step_metrics(self, stats: list[dict[str, Any]], norm: float) -> dict[str, float]:
        return {}

    def _finish(self) -> None:
        """Undo trainer-specific state."""

    # -- the loop --------------------------------------------------------------------------------------------------
    def _trainable(self) -> dict[str, Any]:
        return dict(tree_flatten(self._model.module.trainable_parameters()))

    def _restore(self, state: Mapping[str, Any]) -> None:
        self._model.module.load_weights(list(state.items()), strict=False)
        mx.eval(self._model.module.parameters())

    def _notify_step(self, step: int, metrics: Mapping[str, float]) -> None:
        for cb in self.callbacks:
            hook = getattr(cb, "on_step", None)
            if hook is not None:
                hook(step, metrics)

    def _notify_save(self, path: Path) -> None:
        for cb in self.callbacks:
            hook = getattr(cb, "on_save", None)
            if hook is not None:
                hook(path)

    def _run(self, data: Sequence[Mapping[str, Any]], target: Path, *, source: str) -> TrainingResult:
        examples, stats = self._prepare(data, source)  # invalid data/config raises here, before any work
        model = self._model
        if not model.has_adapter():
            model.add_adapter(self.config.adapter_config(), seed=self.config.seed)
        cfg = self.config
        total = schedule.total_steps(len(examples), cfg.per_device_batch_size, cfg.gradient_accumulation_steps,
                                     cfg.num_epochs, cfg.max_steps)
        warmup = schedule.warmup_steps(total, cfg.warmup_steps, cfg.warmup_ratio)
        history: list[dict[str, float]] = []
        saved: list[Path] = []
        good = self._trainable()
        start = time.perf_counter()
        samples = 0  # presentations, counting epochs (metrics["samples_seen"])
        distinct: set[int] = set()  # TrainingResult.samples_trained: distinct examples trained on (as torch)
        num_tokens = 0
        try:
            self._start(examples)
            optimizer = make_optimizer(cfg)
            model.module.train()
            for planned in schedule.plan_steps(len(examples), cfg.per_device_batch_size,
                                               cfg.gradient_accumulation_steps, total, cfg.seed):
                loss_sum: Any = 0.0
                grads: Any = None
                norm: Any = 0.0
                micro_stats: list[dict[str, Any]] = []
                for indices in planned.micro_batches:
                    l_sum, g_sum, count, aux = self._micro_step(examples, indices)
                    loss_sum = loss_sum + l_sum
                    grads = add_trees(grads, g_sum)
                    norm = norm + count
                    micro_stats.append(aux)
                    samples += len(indices)
                    distinct.update(indices)
                    num_tokens += int(aux.get("input_tokens", 0))
                denom = mx.maximum(mx.array(norm, dtype=mx.float32), 1.0)
                loss = loss_sum / denom
                grads = tree_map(lambda g: g / denom, grads)
                if cfg.max_grad_norm > 0:
                    grads, grad_norm = optim.clip_grad_norm(grads, cfg.max_grad_norm)
                else:
                    grad_norm = mx.sqrt(sum((g.square().sum() for _, g in tree_flatten(grads)), mx.array(0.0)))
                mx.eval(loss, grad_norm, grads)
                loss_value, norm_value = float(loss), float(grad_norm)
                if not (math.isfinite(loss_value) and math.isfinite(norm_value)):
                    raise TrainingError(f"non-finite loss/gradient at step {planned.index + 1} "
                                        f"(loss={loss_value}, grad_norm={norm_value})")
                lr = cfg.learning_rate * schedule.lr_factor(cfg.lr_scheduler, planned.index, total, warmup)
                optimizer.learning_rate = lr
                optimizer.update(model.module, grads)
                mx.eval(model.module.parameters(), optimizer.state)
                metrics = {"loss": loss_value, "learning_rate": lr, "grad_norm": norm_value,
                           "epoch": planned.epoch, "num_tokens": float(num_tokens),
                           **self._step_metrics(micro_stats, float(norm))}
                history.append({"step": float(planned.index + 1), **metrics})
                if (planned.index + 1) % cfg.logging_steps == 0 or planned.index + 1 == total:
                    self._notify_step(planned.index + 1, metrics)
                if cfg.save_steps and (planned.index + 1) % cfg.save_steps == 0 and planned.index + 1 < total:
                    save_adapter(model, target)
                    good = self._trainable()
                    saved.append(target)
                    self._notify_save(target)
        except ConfigError:
            self._finish()
            model.module.eval()
            raise
        except (MindprintError, MemoryError, RuntimeError, ValueError, ArithmeticError) as exc:
            return self._failed(exc, good, start, history, stats, saved, samples, len(distinct))
        self._finish()
        model.module.eval()
        save_adapter(model, target)
        self._notify_save(target)
        result = TrainingResult(success=True, final_loss=history[-1]["loss"] if history else float("nan"),
                                training_time_seconds=time.perf_counter() - start, samples_trained=len(distinct),
                                adapter_path=str(target), metrics=self._metrics(history, stats, total, samples))
        self.last_result = result
        return result

    def _failed(self, exc: BaseException, good: Mapping[str, Any], start: float, history: list[dict[str, float]],
                stats: dict[str, Any], saved: list[Path], samples: int, distinct: int) -> TrainingResult:
        self._finish()
        self._restore(good)  # back to the last good weights (last checkpoint, or the start of this run)
        self._model.module.eval()
        message = f"out of memory: {exc}" if isinstance(exc, MemoryError) else f"{type(exc).__name__}: {exc}"
        result = TrainingResult(success=False, final_loss=history[-1]["loss"] if history else float("nan"),
                                training_time_seconds=time.perf_counter() - start, samples_trained=distinct,
                                adapter_path=str(saved[-1]) if saved else "", error_message=message,
                                metrics=self._metrics(history, stats, len(history), samples))
        self.last_result = result
        return result

    @staticmethod
    def _metrics(history: list[dict[str, float]], stats: dict[str, Any], total: int, seen: int) -> dict[str, Any]:
        metrics: dict[str, Any] = {}
        if history:
            metrics.update({k: v for k, v in history[-1].items() if k != "step"})
        metrics["history"] = list(history)
        metrics["global_step"] = len(history)
        metrics["total_steps"] = total
        metrics["samples_seen"] = seen  # presentations, counting epochs
        metrics.update(stats)
        return metrics
