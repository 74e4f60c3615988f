"""The shared training loop of MLXSFTTrainer and MLXDPOTrainer.

One optimizer step = ``gradient_accumulation_steps`` micro-batches whose *summed* losses and
gradients are divided by the step's normaliser (loss tokens for SFT, pairs for DPO), then
global-norm clipping, then AdamW as the HF Trainer configures it (bias correction on, decoupled
weight decay, betas/eps from the config) at the scheduled LR. Non-finite losses or gradients stop
the run *before* the update, so the model keeps its last good weights.

Data parallel (``mlx.launch``, see :mod:`.distributed`): a global micro-batch holds
``per_device_batch_size * world_size`` examples, each rank computes the summed loss and gradients of
its shard, the sums and the normaliser are ``all_sum``'ed and divided by the *global* normaliser
(all micro-batches of all ranks), so every rank applies the same update. Only rank 0 calls the
callbacks and writes adapters; the others wait at a barrier.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import mlx.core as mx
import numpy as np
import mlx.optimizers as optim
from mlx.utils import tree_flatten, tree_map

from mindprint_interfaces import ConfigError, MindprintError, TrainingError, TrainingResult
from mindprint_interfaces.callbacks import CallbackRaised, notify_save, notify_step, original_callback_errors
from mindprint_interfaces.configs import _TrainConfigBase
from mindprint_interfaces.protocols import PathLike, TrainerCallback

from . import distributed, lean_forward, schedule
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


@dataclass
class StepGradients:
    """One optimizer step's loss and gradients, normalised by the global normaliser (before clipping)."""

    loss: Any  # mx scalar: global loss sum / global normaliser
    grads: Any  # gradient tree (same structure as trainable_parameters()), identical on every rank
    normaliser: float  # global loss tokens (SFT) or pairs (DPO) of the step, over all ranks
    input_tokens: int  # global input tokens of the step
    micro_stats: list[dict[str, Any]] = field(default_factory=list)  # this rank's per-micro-batch aux stats


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
        # Forwards that skip work not reaching the loss (see lean_forward), when this model's layout allows it;
        # False selects the padded batched forward (same numbers).
        self.lean_forward = lean_forward.supports_lean_forward(model.module)

    # -- Trainer protocol ------------------------------------------------------------------------------------------
    def get_model(self) -> MLXModel:
        return self._model

    def save_adapter(self, path: PathLike) -> Path:
        """Save the adapter (PEFT layout). Under ``mlx.launch`` call it on every rank: rank 0 writes, all wait."""
        out = self._save(Path(path))
        self._notify_save(out)
        return out

    def batch_gradients(self, data: Sequence[Mapping[str, Any]]) -> tuple[float, dict[str, np.ndarray]]:
        """Loss and gradients of ONE optimizer step whose global batch is all of ``data``, under the trainer's loss.

        The same code path as a training step (sharding by rank, local sums, ``all_sum`` of losses,
        normalisers and gradients, division by the global normaliser), without clipping and without an
        update. Under ``mlx.launch`` call it on every rank; every rank gets the same all-reduced result.
        Gradient keys are mlx parameter names (``model.layers.0.self_attn.q_proj.lora_a``).
        """
        examples, _ = self._prepare(data, "<batch>")
        model = self._model
        if not model.has_adapter():
            model.add_adapter(self.config.adapter_config(), seed=self.config.seed)
        self._sync_from_main()
        per = self.config.per_device_batch_size * distributed.world_size()
        micro = [tuple(range(i, min(i + per, len(examples)))) for i in range(0, len(examples), per)]
        was_training = model.module.training
        try:
            self._start(examples)
            model.module.train()
            step = self._step_gradients(examples, micro)
            mx.eval(step.loss, step.grads)
        finally:
            self._finish()
            model.module.train(was_training)
        return float(step.loss), {k: np.array(v) for k, v in tree_flatten(step.grads)}

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

    def _save(self, target: Path) -> Path:
        """Rank 0 writes the adapter atomically; the other ranks wait for it (a no-op barrier on one process)."""
        distributed.on_main_then_wait(lambda: save_adapter(self._model, target))
        return target

    def _sync_from_main(self) -> None:
        """Make every rank start from rank 0's trainable weights (they already agree when seeded alike)."""
        if not distributed.launched():
            return
        params = self._model.module.trainable_parameters()
        main = distributed.is_main_process()
        synced = distributed.all_sum_tree(tree_map(lambda p: p if main else mx.zeros_like(p), params))
        self._model.module.update(synced)
        mx.eval(self._model.module.parameters())

    def _step_gradients(self, examples: list[Any], micro_batches: Sequence[Sequence[int]]) -> StepGradients:
        """Sum this rank's shard of every global micro-batch, all-reduce the sums, divide by the global normaliser."""
        loss_sum: Any = 0.0
        grads: Any = None
        norm: Any = 0.0
        tokens = 0
        micro_stats: list[dict[str, Any]] = []
        for indices in micro_batches:
            local = distributed.shard(indices)
            if not local:  # a short last micro-batch: this rank has nothing, but must join the all-reduce
                continue
            l_sum, g_sum, count, aux = self._micro_step(examples, local)
            loss_sum = loss_sum + l_sum
            grads = add_trees(grads, g_sum)
            norm = norm + count
            tokens += int(aux.get("input_tokens", 0))
            micro_stats.append(aux)
        if grads is None:
            grads = tree_map(mx.zeros_like, self._model.module.trainable_parameters())
        totals = mx.stack([mx.array(loss_sum, dtype=mx.float32), mx.array(norm, dtype=mx.float32),
                           mx.array(float(tokens), dtype=mx.float32)])
        if distributed.launched():
            totals = distributed.all_sum(totals)
            grads = distributed.all_sum_tree(grads)
        denom = mx.maximum(totals[1], 1.0)
        grads = tree_map(lambda g: g / denom, grads)
        return StepGradients(loss=totals[0] / denom, grads=grads, normaliser=float(totals[1]),
                             input_tokens=int(float(totals[2])), micro_stats=micro_stats)

    def _notify_step(self, step: int, metrics: Mapping[str, float]) -> None:
        if not distributed.is_main_process():
            return
        notify_step(self.callbacks, step, metrics)

    def _notify_save(self, path: Path) -> None:
        if not distributed.is_main_process():
            return
        notify_save(self.callbacks, path)

    def _run(self, data: Sequence[Mapping[str, Any]], target: Path, *, source: str) -> TrainingResult:
        examples, stats = self._prepare(data, source)  # invalid data/config raises here, before any work
        model = self._model
        if not model.has_adapter():
            model.add_adapter(self.config.adapter_config(), seed=self.config.seed)
        cfg = self.config
        world = distributed.world_size()
        global_batch = cfg.per_device_batch_size * world  # examples per global micro-batch (HF's DDP meaning)
        total = schedule.total_steps(len(examples), global_batch, cfg.gradient_accumulation_steps,
                                     cfg.num_epochs, cfg.max_steps)
        warmup = schedule.warmup_steps(total, cfg.warmup_steps, cfg.warmup_ratio)
        history: list[dict[str, float]] = []
        saved: list[Path] = []
        self._sync_from_main()
        good = self._trainable()
        start = time.perf_counter()
        samples = 0  # presentations over all ranks, counting epochs (metrics["samples_seen"])
        distinct: set[int] = set()  # TrainingResult.samples_trained: distinct examples trained on (as torch)
        num_tokens = 0
        try:
            self._start(examples)
            optimizer = make_optimizer(cfg)
            model.module.train()
            for planned in schedule.plan_steps(len(examples), global_batch,
                                               cfg.gradient_accumulation_steps, total, cfg.seed):
                step = self._step_gradients(examples, planned.micro_batches)
                for indices in planned.micro_batches:
                    samples += len(indices)
                    distinct.update(indices)
                num_tokens += step.input_tokens
                loss, grads = step.loss, step.grads
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
                           **self._step_metrics(step.micro_stats, step.normaliser)}
                history.append({"step": float(planned.index + 1), **metrics})
                if (planned.index + 1) % cfg.logging_steps == 0 or planned.index + 1 == total:
                    self._notify_step(planned.index + 1, metrics)
                if cfg.save_steps and (planned.index + 1) % cfg.save_steps == 0 and planned.index + 1 < total:
                    self._save(target)
                    good = self._trainable()
                    saved.append(target)
                    self._notify_save(target)
        except ConfigError:
            self._finish()
            model.module.eval()
            raise
        except CallbackRaised as exc:  # the user's callback asked to stop (or failed): restore, then let it through
            self._failed(exc, good, start, history, stats, saved, samples, len(distinct))
            raise exc.original from None
        except (MindprintError, MemoryError, RuntimeError, ValueError, ArithmeticError) as exc:
            return self._failed(exc, good, start, history, stats, saved, samples, len(distinct))
        self._finish()
        model.module.eval()
        self._save(target)
        with original_callback_errors():
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
