"""What the torch SFT and DPO trainers share: TRL argument mapping and the kit's hooks on top of TRL.

The run template (validate, adapter, snapshot, failure policy, saving, the result) is
:class:`mindprint_kit.trainer.KitTrainer`'s; here TRL's trainer is the step loop. A subclass says how to
tokenize (``_prepare``), how to lay the examples out for TRL (``_dataset``) and which TRL trainer to build
(``_build``).

Under ``torchrun`` / ``accelerate launch`` TRL trains with DDP (see :mod:`.distributed`): only rank 0
writes adapters (the others wait at a barrier) and calls the user's callbacks.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import torch
from transformers import TrainerCallback
from transformers.trainer_callback import PrinterCallback

from mindprint_interfaces import ConfigError
from mindprint_interfaces.configs import TrainConfigBase
from mindprint_interfaces.protocols import TrainerCallback as MindprintCallback
from mindprint_kit.data import Prepared
from mindprint_kit.trainer import KitTrainer, RunProgress

from . import distributed, resume
from ._compat import transformers as transformers_compat
from ._compat import trl as trl_compat
from .adapters import add_adapter, base_info, current_config, live_weights, load_adapter, save_adapter
from .callbacks import ProgressBridge
from .model import PyTorchModel

C = TypeVar("C", bound=TrainConfigBase)


def common_args(config: TrainConfigBase, model: PyTorchModel) -> dict[str, Any]:
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
        **(_checkpointing_on() if config.gradient_checkpointing else _checkpointing_off()),
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


def _checkpointing_on() -> dict[str, Any]:
    """HF's gradient checkpointing (non-reentrant: the LoRA inputs need no requires_grad hook, PEFT's note)."""
    flags = {key: True for key in _checkpointing_off()}
    return {**flags, "gradient_checkpointing_kwargs": {"use_reentrant": False}}


class PyTorchTrainerBase(KitTrainer[C, PyTorchModel]):
    """The kit's trainer with TRL as the step loop; subclasses provide ``_prepare``, ``_dataset`` and ``_build``."""

    backend_name = "pytorch"

    def __init__(self, model: PyTorchModel, config: C, callbacks: Sequence[MindprintCallback] = ()) -> None:
        super().__init__(model, config, callbacks)
        self.trl_trainer: Any = None  # the last TRL trainer (for inspection)
        self.resume_hooks: Any = None  # the last resume's _compat.transformers.ResumeHooks (which were taken)

    def batch_gradients(self, train_data: Sequence[Mapping[str, Any]]) -> tuple[float, dict[str, Any]]:
        """Loss and gradients of ONE optimizer step whose global batch is all of ``train_data``.

        Runs the real TRL/HF training loop for exactly one step (sharded data loader, DDP, ``num_items_in_batch``
        normalisation, gradient accumulation ``len(data) / (per_device_batch_size * world_size)``) with clipping
        off, captures the all-reduced gradients just before the optimizer step, then restores the adapter weights.
        Call it on every rank; every rank returns the same result. ``len(data)`` must be a multiple of
        ``per_device_batch_size * world_size`` (accelerate would otherwise repeat examples to fill the batch).
        Gradients are keyed by PEFT parameter names (``...layers.0.self_attn.q_proj.lora_A.default.weight``).
        """
        import numpy as np

        prepared = self._prepare(train_data, "<batch>")
        per_step = self.config.per_device_batch_size * distributed.world_size()
        if not prepared.examples or len(prepared.examples) % per_step:
            raise ConfigError(f"batch_gradients: {len(prepared.examples)} examples is not a multiple of "
                              f"per_device_batch_size x world_size = {per_step}", key="per_device_batch_size")
        self._ensure_adapter()
        hf_model = self._model.hf_model
        captured: dict[str, Any] = {}

        class _Capture(TrainerCallback):
            def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                for name, p in hf_model.named_parameters():
                    if p.requires_grad and p.grad is not None:
                        captured[name] = p.grad.detach().float().cpu().numpy().copy()

        original = self.config
        state = self._snapshot()
        bridge = ProgressBridge([])
        self.config = original.replace(gradient_accumulation_steps=len(prepared.examples) // per_step, max_steps=1,
                                       max_grad_norm=0.0, save_steps=0, logging_steps=1)
        try:
            with quiet_datasets():
                hf_trainer = self._build(self._dataset(prepared), bridge)
            hf_trainer.remove_callback(PrinterCallback)
            hf_trainer.add_callback(_Capture())
            self.trl_trainer = hf_trainer
            hf_trainer.train()
        finally:
            self.config = original
            self._cleanup()
            self._restore(state)
            hf_model.eval()
        loss = float(bridge.history[0]["loss"]) if bridge.history else float("nan")
        return loss, {k: np.asarray(v) for k, v in captured.items()}

    # -- subclass hooks --------------------------------------------------------------------------------------------
    def _dataset(self, prepared: Prepared[Any]) -> Any:
        """The tokenized examples as the ``datasets.Dataset`` TRL's collator takes."""
        raise NotImplementedError

    def _build(self, dataset: Any, bridge: ProgressBridge) -> Any:
        """Create the TRL trainer on ``self._model`` (which has an adapter)."""
        raise NotImplementedError

    # -- the kit's hooks -------------------------------------------------------------------------------------------
    def _ensure_adapter(self) -> None:
        if not self._model.has_adapter():
            add_adapter(self._model, self.config.adapter_config(), seed=self.config.seed)

    def _snapshot(self) -> dict[str, torch.Tensor]:
        return {n: p.detach().clone() for n, p in self._model.hf_model.named_parameters() if p.requires_grad}

    def _restore(self, state: Mapping[str, torch.Tensor]) -> None:
        params = dict(self._model.hf_model.named_parameters())
        with torch.no_grad():
            for name, value in state.items():
                if name in params:
                    params[name].copy_(value)

    def _weights_finite(self) -> bool:
        with torch.no_grad():
            return all(bool(torch.isfinite(p).all()) for p in self._model.hf_model.parameters() if p.requires_grad)

    def _set_eval(self) -> None:
        self._model.hf_model.eval()

    def _write_adapter(self, target: Path) -> None:
        distributed.on_main_then_wait(lambda: save_adapter(self._model, target))

    def _is_main(self) -> bool:
        return distributed.is_main_process()

    def _out_of_memory(self, exc: BaseException) -> bool:
        return isinstance(exc, (MemoryError, torch.OutOfMemoryError))

    # -- full-state checkpoints (mindprint_kit.checkpoints; the layout of torch's state is in .resume) -------------
    def _optimizer_state(self) -> tuple[int, Any]:
        return resume.export_moments(self.trl_trainer.optimizer, self._model.hf_model)

    def _rng_state(self) -> dict[str, Any]:
        return resume.rng_state()

    def _save_adapter_files(self, target: Path) -> None:
        save_adapter(self._model, target)

    def _load_checkpoint_adapter(self, path: Path) -> None:
        load_adapter(self._model, path)

    def _base_record(self) -> dict[str, Any]:
        return base_info(self._model, live_weights(self._model))

    def _live_adapter_config(self) -> Any:
        from mindprint_kit.adapter_files import adapter_config_for

        return adapter_config_for(current_config(self._model), live_weights(self._model), self._model.num_layers)

    def _loop_counters(self) -> dict[str, Any]:
        trainer = self.trl_trainer
        last = self._checkpoint_history[-1] if self._checkpoint_history else {}
        return {"samples_seen": int(getattr(trainer, "samples_seen", 0) or 0),
                "num_tokens": int(last.get("num_tokens", 0))}

    def _install_resume(self, trainer: Any) -> Any:
        """Let the HF Trainer resume from our checkpoint without its pickles (see ``_compat.transformers``)."""
        assert self._resume is not None
        saved = self._resume.data

        def load_optimizer() -> None:
            resume.import_moments(trainer.optimizer, self._model.hf_model, saved.optimizer_step, saved.moments)
            resume.move_scheduler(trainer.lr_scheduler, saved.global_step)

        def load_rng() -> None:
            resume.restore_rng(saved.rng if saved.backend == self.backend_name else {}, self.config.seed,
                               saved.global_step)

        trainer.samples_seen = int(saved.counters.get("samples_seen", 0))
        last = saved.history[-1] if saved.history else {}
        trl_compat.set_token_count(trainer, int(saved.counters.get("num_tokens", last.get("num_tokens", 0))))
        return transformers_compat.install_resume_hooks(trainer, load_optimizer=load_optimizer, load_rng=load_rng)

    def _train_steps(self, prepared: Prepared[Any], progress: RunProgress, checkpoint: Callable[[], None]) -> None:
        self._checkpoint_history = progress.history

        def on_checkpoint(step: int) -> None:
            progress.global_step = step  # the kit needs the step of a save (the rest is filled in at the end)
            progress.total_steps = int(self.trl_trainer.state.max_steps)
            checkpoint()

        bridge = ProgressBridge(self.callbacks, save_steps=self.config.save_steps,
                                on_checkpoint=on_checkpoint, history=progress.history)
        trainer: Any = None
        try:
            with quiet_datasets():
                trainer = self._build(self._dataset(prepared), bridge)
            self._apply_resumed_policy()  # TRL fixed the reference in __init__ ("ref" copy / precomputed log-probs)
            trainer.remove_callback(PrinterCallback)  # progress goes through our callbacks, not stdout
            self.trl_trainer = trainer
            if self._resume is None:
                output = trainer.train()
            else:
                self.resume_hooks = self._install_resume(trainer)
                output = trainer.train(resume_from_checkpoint=str(self._resume.path))
                self.resume_hooks.require_taken()
            progress.fallback_loss = float(output.training_loss)
        finally:
            progress.summary.update(bridge.summary)
            state = getattr(trainer, "state", None)
            progress.global_step = int(getattr(state, "global_step", 0) or 0)
            progress.total_steps = int(getattr(state, "max_steps", 0) or 0)
            progress.samples_seen = int(getattr(trainer, "samples_seen", 0) or 0)  # presentations, counting epochs
            # distinct examples trained on: the tokenized examples, capped by what was actually seen
            progress.samples_trained = min(len(prepared.examples), progress.samples_seen)
