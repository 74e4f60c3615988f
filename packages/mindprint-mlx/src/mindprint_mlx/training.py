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

The run template around the loop (validation, adapter, snapshot, failure policy, saving, the result)
is :class:`mindprint_kit.trainer.KitTrainer`'s; this module fills its hooks.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import mlx.core as mx
import mlx.optimizers as optim
import numpy as np
from mlx.utils import tree_flatten, tree_map

from mindprint_interfaces import ConfigError, TrainingError
from mindprint_interfaces.adapter_format import LoraKey
from mindprint_interfaces.configs import TrainConfigBase
from mindprint_interfaces.protocols import TrainerCallback
from mindprint_kit import schedule
from mindprint_kit.data import Prepared
from mindprint_kit.trainer import KitTrainer, RunProgress

from . import distributed, lean_forward, resume
from .adapters import base_info, live_weights, load_adapter, save_adapter
from .checkpointing import checkpointed_layers
from .model import MLXModel

C = TypeVar("C", bound=TrainConfigBase)


def make_optimizer(config: TrainConfigBase) -> Any:
    """AdamW like torch.optim.AdamW under the HF Trainer (mlx's defaults differ: wd 0.01, no bias correction)."""
    return optim.AdamW(learning_rate=config.learning_rate, betas=[config.adam_beta1, config.adam_beta2],
                       eps=config.adam_epsilon, weight_decay=config.weight_decay, bias_correction=True)


def add_trees(a: Any, b: Any) -> Any:
    return b if a is None else tree_map(lambda x, y: x + y, a, b)


def peft_gradient_name(mlx_name: str) -> tuple[str, bool]:
    """``model.layers.0.self_attn.q_proj.lora_a`` -> (PEFT parameter name, True when it is a LoRA matrix)."""
    head, _, leaf = mlx_name.rpartition(".")
    if leaf not in ("lora_a", "lora_b") or not head.startswith("model.layers."):
        return mlx_name, False
    layer, _, module = head.removeprefix("model.layers.").partition(".")
    return LoraKey(int(layer), module, "A" if leaf == "lora_a" else "B").peft_parameter(), True


@dataclass
class StepGradients:
    """One optimizer step's loss and gradients, normalised by the global normaliser (before clipping)."""

    loss: Any  # mx scalar: global loss sum / global normaliser
    grads: Any  # gradient tree (same structure as trainable_parameters()), identical on every rank
    normaliser: float  # global loss tokens (SFT) or pairs (DPO) of the step, over all ranks
    input_tokens: int  # global input tokens of the step
    micro_stats: list[dict[str, Any]] = field(default_factory=list)  # this rank's per-micro-batch aux stats


class MLXTrainerBase(KitTrainer[C, MLXModel]):
    """The kit's trainer on MLX; subclasses implement ``_prepare``, ``_micro_step`` (and ``_start``)."""

    shuffle_data = True  # False: batches in data order (KTO's KL pairing needs it, as TRL's sequential sampling)
    backend_name = "mlx"

    def __init__(self, model: MLXModel, config: C, callbacks: Sequence[TrainerCallback] = ()) -> None:
        super().__init__(model, config, callbacks)
        if config.lora_layers is not None and any(i >= model.num_layers for i in config.lora_layers):
            raise ConfigError(f"lora_layers {list(config.lora_layers)}: the model has {model.num_layers} layers "
                              f"(0..{model.num_layers - 1})", key="lora_layers")
        # Forwards that skip work not reaching the loss (see lean_forward), when this model's layout allows it;
        # False selects the padded batched forward (same numbers).
        self.lean_forward = lean_forward.supports_lean_forward(model.module)

    def batch_gradients(self, data: Sequence[Mapping[str, Any]]) -> tuple[float, dict[str, np.ndarray]]:
        """Loss and gradients of ONE optimizer step whose global batch is all of ``data``, under the trainer's loss.

        The same code path as a training step (sharding by rank, local sums, ``all_sum`` of losses,
        normalisers and gradients, division by the global normaliser), without clipping and without an
        update. Under ``mlx.launch`` call it on every rank; every rank gets the same all-reduced result.
        Gradients are keyed by PEFT parameter names in PEFT orientation, as on every backend.
        """
        prepared = self._prepare(data, "<batch>")
        examples = prepared.examples
        model = self._model
        self._ensure_adapter()
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
            self._cleanup()
            model.module.train(was_training)
        grads: dict[str, np.ndarray] = {}
        for name, value in tree_flatten(step.grads):
            peft_name, is_lora = peft_gradient_name(name)
            grads[peft_name] = np.array(value).T.copy() if is_lora else np.array(value)
        return float(step.loss), grads

    # -- hooks of the step loop ------------------------------------------------------------------------------------
    def _start(self, examples: list[Any]) -> None:
        """Work before the first step (DPO: reference log-probs)."""

    def _micro_step(self, examples: list[Any], indices: Sequence[int]) -> tuple[Any, Any, Any, dict[str, Any]]:
        """Return (summed loss, summed grads, normaliser count, summed/aux stats) for one micro-batch."""
        raise NotImplementedError

    def _step_metrics(self, stats: list[dict[str, Any]], norm: float) -> dict[str, float]:
        return {}

    # -- the kit's hooks -------------------------------------------------------------------------------------------
    def _ensure_adapter(self) -> None:
        if not self._model.has_adapter():
            self._model.add_adapter(self.config.adapter_config(), seed=self.config.seed)

    def _snapshot(self) -> dict[str, Any]:
        return dict(tree_flatten(self._model.module.trainable_parameters()))

    def _restore(self, state: Mapping[str, Any]) -> None:
        self._model.module.load_weights(list(state.items()), strict=False)
        mx.eval(self._model.module.parameters())

    def _weights_finite(self) -> bool:
        return all(bool(mx.isfinite(v).all().item()) for _, v in tree_flatten(self._model.module.trainable_parameters()))

    def _set_eval(self) -> None:
        self._model.module.eval()

    def _write_adapter(self, target: Path) -> None:
        """Rank 0 writes the adapter atomically; the other ranks wait for it (a no-op barrier on one process)."""
        distributed.on_main_then_wait(lambda: save_adapter(self._model, target))

    def _is_main(self) -> bool:
        return distributed.is_main_process()

    # -- full-state checkpoints (mindprint_kit.checkpoints; the moments' layout is in .resume) ---------------------
    def _optimizer_state(self) -> tuple[int, Any]:
        return resume.export_moments(self._optimizer)

    def _rng_state(self) -> dict[str, np.ndarray]:
        return resume.rng_state()

    def _save_adapter_files(self, target: Path) -> None:
        save_adapter(self._model, target)

    def _load_checkpoint_adapter(self, path: Path) -> None:
        load_adapter(self._model, path)

    def _base_record(self) -> dict[str, Any]:
        return base_info(self._model, live_weights(self._model.module))

    def _live_adapter_config(self) -> Any:
        return self._model.adapter_config or self.config.adapter_config()

    def _loop_counters(self) -> dict[str, Any]:
        return dict(self._counters)

    def _data_order(self, num_examples: int, global_step: int) -> dict[str, Any]:
        from mindprint_kit.checkpoints import data_order

        return data_order(self.config, num_examples, self.config.per_device_batch_size * distributed.world_size(),
                          global_step, shuffle=self.shuffle_data)

    # -- the loop --------------------------------------------------------------------------------------------------
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

    def _train_steps(self, prepared: Prepared[Any], progress: RunProgress, checkpoint: Callable[[], None]) -> None:
        examples = prepared.examples
        model = self._model
        cfg = self.config
        global_batch = cfg.per_device_batch_size * distributed.world_size()  # examples per global micro-batch
        total = schedule.total_steps(len(examples), global_batch, cfg.gradient_accumulation_steps,
                                     cfg.num_epochs, cfg.max_steps)
        warmup = schedule.warmup_steps(total, cfg.warmup_steps, cfg.warmup_ratio)
        progress.total_steps = total
        self._sync_from_main()
        distinct: set[int] = set()  # samples_trained: distinct examples trained on (as torch)
        num_tokens = 0
        self._start(examples)
        self._apply_resumed_policy()  # a resumed initial_policy run: reference fixed, the policy continues
        optimizer = make_optimizer(cfg)
        self._optimizer = optimizer
        self._counters: dict[str, Any] = {}
        if self._resume is not None:
            saved = self._resume.data
            resume.import_moments(optimizer, model.module.trainable_parameters(), saved.optimizer_step, saved.moments)
            resume.restore_rng(saved.rng if saved.backend == self.backend_name else {}, cfg.seed, saved.global_step)
            last = saved.history[-1] if saved.history else {}
            num_tokens = int(saved.counters.get("num_tokens", last.get("num_tokens", 0)))
        model.module.train()
        with checkpointed_layers(model.module, cfg.gradient_checkpointing):
            self._step_loop(examples, progress, checkpoint, optimizer, total, warmup, distinct, num_tokens)

    def _step_loop(self, examples: list[Any], progress: RunProgress, checkpoint: Callable[[], None], optimizer: Any,
                   total: int, warmup: int, distinct: set[int], num_tokens: int) -> None:
        model = self._model
        cfg = self.config
        global_batch = cfg.per_device_batch_size * distributed.world_size()
        first = self._resume.data.global_step if self._resume is not None else 0  # steps a resumed run skips
        for planned in schedule.plan_steps(len(examples), global_batch, cfg.gradient_accumulation_steps, total,
                                           cfg.seed, shuffle=self.shuffle_data):
            for indices in planned.micro_batches:
                progress.samples_seen += len(indices)
                distinct.update(indices)
            progress.samples_trained = len(distinct)
            if planned.index < first:  # done before the checkpoint: the plan is replayed, not trained
                continue
            step = self._step_gradients(examples, planned.micro_batches)
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
            progress.history.append({"step": float(planned.index + 1), **metrics})
            progress.global_step = planned.index + 1
            self._counters = {"samples_seen": progress.samples_seen, "samples_trained": progress.samples_trained,
                              "num_tokens": num_tokens}
            if (planned.index + 1) % cfg.logging_steps == 0 or planned.index + 1 == total:
                self._notify_step(planned.index + 1, metrics)
            if cfg.save_steps and (planned.index + 1) % cfg.save_steps == 0 and planned.index + 1 < total:
                checkpoint()
