"""The train template every backend's trainers share, and the hooks a backend fills in.

One run (``train``):

1. validate + tokenize the records (:meth:`KitTrainer._prepare`) — bad data or config raises here,
   before any work;
2. make sure the model has a LoRA adapter (seeded) and snapshot its trainable weights;
3. run the backend's step loop (:meth:`KitTrainer._train_steps`); it records what it did in a
   :class:`RunProgress` and calls ``checkpoint()`` every ``save_steps``;
4. a failure of training itself (non-finite loss or weights, out of memory, a runtime error) restores the last
   good weights in memory, leaves the last good adapter on disk (a save whose weights no later step trained on
   with a finite loss is not "good": it is rewritten from the good weights or removed) and returns
   ``TrainingResult(success=False)``; a config error or an exception raised by the user's callback
   goes back to the caller after the same restore;
5. on success the adapter is written atomically to the target directory and reported.

Under a data-parallel launcher only the main process writes and calls callbacks; a backend says who
that is (:meth:`KitTrainer._is_main`) and how to write-then-wait (:meth:`KitTrainer._write_adapter`).
"""

from __future__ import annotations

import math
import shutil
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np

from mindprint_interfaces import ConfigError, MindprintError, TrainingError, TrainingResult
from mindprint_interfaces.callback_dispatch import (
    CallbackRaised,
    notify_save,
    notify_step,
    original_callback_errors,
)
from mindprint_interfaces.configs import TrainConfigBase
from mindprint_interfaces.phases import phase
from mindprint_interfaces.protocols import PathLike, TrainerCallback

from . import checkpoints, schedule
from .data import Prepared

C = TypeVar("C", bound=TrainConfigBase)
M = TypeVar("M")

DEFAULT_ADAPTER_DIR = "adapter"  # under config.output_dir when train() is given no directory


@dataclass
class RunProgress:
    """What a step loop has done so far; the result is built from it on success and on failure alike."""

    history: list[dict[str, float]] = field(default_factory=list)  # one entry per logged step ("step" + metrics)
    summary: dict[str, float] = field(default_factory=dict)  # run-level figures (e.g. TRL's train_runtime)
    global_step: int = 0  # optimizer steps done
    total_steps: int = 0  # optimizer steps planned
    samples_seen: int = 0  # presentations over all processes, counting epochs
    samples_trained: int = 0  # distinct examples trained on
    fallback_loss: float = math.nan  # final loss when nothing was logged (e.g. TRL's training_loss)


def safe_relative_dir(name: str, *, key: str) -> PurePosixPath:
    """A relative sub-directory that stays inside its parent: no absolute path, no empty or '..' part."""
    path = PurePosixPath(name) if isinstance(name, str) else None
    if path is None or not name or name.startswith("/") or "\\" in name or any(
            part in ("", ".", "..") for part in name.split("/")):
        raise ConfigError(f"{key}: must be a relative path like 'unit/chapter/topic' without '.' or '..' parts, "
                          f"got {name!r}", key=key)
    return path


class KitTrainer(Generic[C, M]):
    """The Trainer protocol, implemented once. Subclasses fill the hooks in the second half of the class."""

    # Training failures reported as TrainingResult(success=False) rather than raised.
    failure_types: ClassVar[tuple[type[BaseException], ...]] = (
        MindprintError, MemoryError, RuntimeError, ValueError, ArithmeticError)

    backend_name: ClassVar[str] = ""  # written into checkpoints (whose RNG keys are this backend's)

    def __init__(self, model: M, config: C, callbacks: Sequence[TrainerCallback] = ()) -> None:
        self._model = model
        self.config = config
        self.callbacks = list(callbacks)
        self.last_result: TrainingResult | None = None
        self._resume: checkpoints.Checkpoint | None = None  # the checkpoint this run continues (set by _run)
        self._fingerprint: dict[str, Any] = {}
        self._reference_files: dict[str, bytes] | None = None  # the initial policy's adapter files (checkpoints)
        self._resumed_policy: Any = None  # a resumed run's policy weights, until the reference is fixed
        self._resumed_finished = False  # the checkpoint is of the last step: nothing is left to train

    # -- Trainer protocol ------------------------------------------------------------------------------------------
    def get_model(self) -> M:
        return self._model

    def save_adapter(self, path: PathLike) -> Path:
        """Save the adapter (PEFT layout). Under a data-parallel launcher call it on every process."""
        target = Path(path)
        with phase("save adapter", detail=str(target)):
            self._write_adapter(target)
        self._notify_save(target)
        return target

    def train(self, train_data: Sequence[Mapping[str, Any]], *, adapter_dir: PathLike | None = None,
              resume_from_checkpoint: PathLike | bool | None = None) -> TrainingResult:
        """Train on ``train_data``; the adapter goes to ``adapter_dir`` (default ``<output_dir>/adapter``, or a new
        run directory under the default ``output_dir``: :mod:`mindprint_kit.default_output`).

        ``resume_from_checkpoint``: a ``checkpoint-<step>`` directory (written by either backend) or True (the
        newest complete one under ``output_dir``): continue that run at its step, with its optimizer state,
        schedule position, data order and RNG (see :mod:`mindprint_kit.checkpoints`)."""
        from .default_output import default_adapter_dir, is_default_output, resumed_adapter_dir

        fresh_run: Path | None = None  # the run directory this call claimed, if it did
        if adapter_dir is not None:
            target = Path(adapter_dir)
        elif resume_from_checkpoint is not None and resume_from_checkpoint is not False:
            target = resumed_adapter_dir(self.config, resume_from_checkpoint)  # the run being continued
        else:
            target = default_adapter_dir(self.config)
            fresh_run = target.parent if is_default_output(self.config) else None
        try:
            return self._run(train_data, target, source="<train_data>", resume=resume_from_checkpoint)
        except BaseException:
            if fresh_run is not None and fresh_run.is_dir() and not any(fresh_run.iterdir()):
                fresh_run.rmdir()  # refused before any work: no empty run directory is left behind
            raise

    def train_on_topic(self, topic_data: Sequence[Mapping[str, Any]], topic_id: str) -> TrainingResult:
        """Deprecated: ``train(data, adapter_dir=<output_dir>/<topic_id>)`` (topic naming is the pipeline's)."""
        warnings.warn("train_on_topic is deprecated; use train(data, adapter_dir=...)", DeprecationWarning,
                      stacklevel=2)
        sub = safe_relative_dir(topic_id, key="topic_id")
        return self._run(topic_data, Path(self.config.output_dir) / sub, source=f"<topic {topic_id}>")

    # -- hooks a backend fills in ----------------------------------------------------------------------------------
    def _prepare(self, data: Sequence[Mapping[str, Any]], source: str) -> Prepared[Any]:
        """Validate + tokenize (see :mod:`mindprint_kit.data`); raises on invalid data."""
        raise NotImplementedError

    def _ensure_adapter(self) -> None:
        """Give the model a fresh LoRA adapter from the config (seeded) when it has none."""
        raise NotImplementedError

    def _snapshot(self) -> Any:
        """A copy of the trainable weights, to restore after a failure."""
        raise NotImplementedError

    def _restore(self, state: Any) -> None:
        raise NotImplementedError

    def _weights_finite(self) -> bool:
        """True when every trainable weight of the model is finite (checked at every save and at the end)."""
        raise NotImplementedError

    def _remove_adapter(self, target: Path) -> None:
        """Delete an adapter this run wrote and must not keep (main process only)."""
        if self._is_main() and target.is_dir():
            shutil.rmtree(target)

    def _train_steps(self, prepared: Prepared[Any], progress: RunProgress, checkpoint: Callable[[], None]) -> None:
        """Run every optimizer step, filling ``progress``; call ``checkpoint()`` after every ``save_steps``."""
        raise NotImplementedError

    def _cleanup(self) -> None:
        """Undo what the run set up (e.g. DPO's reference state); called after success and failure."""

    def _set_eval(self) -> None:
        """Put the model back in inference mode."""
        raise NotImplementedError

    def _write_adapter(self, target: Path) -> None:
        """Write the adapter atomically (main process only; the others wait for it)."""
        raise NotImplementedError

    def _is_main(self) -> bool:
        """True on the process that talks to callbacks and writes files."""
        return True

    def _out_of_memory(self, exc: BaseException) -> bool:
        return isinstance(exc, MemoryError)

    # -- hooks for full-state checkpoints (mindprint_kit.checkpoints) ----------------------------------------------
    def _optimizer_state(self) -> tuple[int, checkpoints.Moments]:
        """(AdamW step count, {PEFT parameter name: {"exp_avg", "exp_avg_sq"}} in PEFT orientation, fp32 numpy)."""
        raise NotImplementedError(f"{type(self).__name__} cannot write full-state checkpoints")

    def _rng_state(self) -> dict[str, np.ndarray]:
        """The random generators the rest of the run draws from, keyed by this backend's names."""
        return {}

    def _save_adapter_files(self, target: Path) -> None:
        """Write the adapter (PEFT layout) on this process, without waiting for others."""
        raise NotImplementedError

    def _load_checkpoint_adapter(self, path: Path) -> None:
        """Replace the model's adapter with the one in ``path`` (a checkpoint directory)."""
        raise NotImplementedError(f"{type(self).__name__} cannot resume from a checkpoint")

    def _base_record(self) -> dict[str, Any]:
        """The base record (:func:`mindprint_kit.adapter_files.base_record`) of the model at the adapter's sites."""
        raise NotImplementedError

    def _live_adapter_config(self) -> Any:
        """The AdapterConfig of the live adapter (presets resolved)."""
        return self.config.adapter_config()

    def _reference_kind(self) -> str | None:
        """``initial_policy`` / ``base`` / ``model`` for a method with a reference (DPO, KTO), else None."""
        kind = getattr(self.config, "reference", None)
        return str(kind) if kind is not None else None

    def _reference_record(self) -> dict[str, Any] | None:
        """With ``reference: model``: the reference model's fingerprint
        (:func:`mindprint_kit.checkpoints.reference_model_record`), so a resume refuses a changed reference."""
        return None

    def _loop_counters(self) -> dict[str, Any]:
        """Run counters a resume continues from (samples_seen, samples_trained, num_tokens)."""
        return {}

    def _data_order(self, num_examples: int, global_step: int) -> dict[str, Any]:
        """The data-order position after ``global_step`` steps."""
        return checkpoints.data_order(self.config, num_examples, self.config.per_device_batch_size, global_step)

    def _checkpoint_root(self, target: Path) -> Path:
        """Where ``checkpoint-<step>/`` go: ``output_dir`` for the default adapter directory (HF's layout), else
        ``<adapter_dir>-checkpoints`` beside it (so stages and topics sharing an output_dir never collide)."""
        from mindprint_interfaces.checkpoint_layout import checkpoint_root

        default = Path(self.config.output_dir) / DEFAULT_ADAPTER_DIR
        return Path(self.config.output_dir) if target == default else checkpoint_root(target)

    def _write_checkpoint(self, progress: RunProgress, num_examples: int, target: Path) -> None:
        if not self._is_main():
            return
        step, moments = self._optimizer_state()
        last = progress.history[-1] if progress.history else {}
        data = checkpoints.CheckpointData(
            global_step=progress.global_step, total_steps=progress.total_steps, epoch=float(last.get("epoch", 0.0)),
            history=[dict(h) for h in progress.history], moments=moments, optimizer_step=step,
            rng=self._rng_state(), backend=self.backend_name, fingerprint=self._fingerprint,
            base=self._base_record(), learning_rate=float(last.get("learning_rate", 0.0)),
            counters=self._loop_counters(), order=self._data_order(num_examples, progress.global_step),
            train_batch_size=self.config.per_device_batch_size, logging_steps=self.config.logging_steps,
            save_steps=self.config.save_steps, num_train_epochs=float(self.config.num_epochs))
        checkpoints.write_checkpoint(self._checkpoint_root(target), data, self._save_adapter_files,
                                     limit=getattr(self.config, "save_total_limit", None),
                                     reference=self._reference_files)

    def _capture_reference(self) -> None:
        """With ``reference: initial_policy`` and checkpoints on: keep the adapter files of the run's start, which
        every checkpoint stores (``reference/``) so a resumed run recomputes the same reference."""
        import tempfile

        self._reference_files = None
        if self._reference_kind() != "initial_policy" or not self.config.save_steps or not self._is_main():
            return
        with tempfile.TemporaryDirectory(prefix="mindprint-reference-") as tmp:
            written = Path(tmp) / "adapter"
            self._save_adapter_files(written)
            self._reference_files = {name: (written / name).read_bytes() for name in checkpoints.ADAPTER_FILES}

    def _apply_resumed_policy(self) -> None:
        """Called by a backend once its reference is fixed (log-probs computed or adapter copied): a resumed
        ``initial_policy`` run computed it from the checkpoint's ``reference/`` adapter; now the policy continues
        from the checkpoint's adapter."""
        if self._resumed_policy is not None:
            self._restore(self._resumed_policy)
            self._resumed_policy = None

    def _begin_resume(self, resume: PathLike | bool | None, target: Path, progress: RunProgress) -> None:
        """Check the checkpoint against this run, load its adapter and history; the step loop reads the rest."""
        self._resume = None
        self._resumed_policy = None
        self._resumed_finished = False
        if resume is None or resume is False:
            self._capture_reference()
            return
        found = checkpoints.resolve(resume if resume is True else Path(resume), self._checkpoint_root(target))
        checkpoints.check_resumable(found, self._fingerprint, self._base_record())
        self._load_checkpoint_adapter(found.path)
        progress.history[:] = [dict(h) for h in found.data.history]
        progress.global_step = found.data.global_step
        self._resumed_finished = found.data.global_step >= found.data.total_steps
        if self._resumed_finished:  # killed after its last checkpoint, before the final save: that is the result
            progress.total_steps = found.data.total_steps
            progress.samples_seen = int(found.data.counters.get("samples_seen", 0))
            progress.samples_trained = int(found.data.counters.get("samples_trained", 0))
            return
        if self._reference_kind() == "initial_policy":
            reference = found.reference
            if reference is None:
                raise ConfigError(f"resume_from_checkpoint: {found.path}: no reference/ adapter (the initial policy "
                                  "the reference is computed from; written by mindprint since checkpoint format "
                                  f"{checkpoints.FORMAT_VERSION} with reference: initial_policy)", key="reference")
            self._resumed_policy = self._snapshot()
            self._load_checkpoint_adapter(reference)  # the reference is computed from it, then the policy returns
            self._reference_files = ({name: (reference / name).read_bytes() for name in checkpoints.ADAPTER_FILES}
                                     if self._is_main() else None)
        self._resume = found

    # -- notifications (main process only) -------------------------------------------------------------------------
    def _notify_step(self, step: int, metrics: Mapping[str, float]) -> None:
        if self._is_main():
            notify_step(self.callbacks, step, metrics)

    def _notify_save(self, path: Path) -> None:
        if self._is_main():
            notify_save(self.callbacks, path)

    # -- the template ----------------------------------------------------------------------------------------------
    def _run(self, data: Sequence[Mapping[str, Any]], target: Path, *, source: str,
             resume: PathLike | bool | None = None) -> TrainingResult:
        with phase("tokenise", detail=f"{len(data)} records"):
            prepared = self._prepare(data, source)  # invalid data/config raises here, before any work
        cfg = self.config
        schedule.check_warmup(len(prepared.examples), cfg.per_device_batch_size, cfg.gradient_accumulation_steps,
                              cfg.num_epochs, cfg.max_steps, cfg.warmup_steps)
        self._ensure_adapter()
        progress = RunProgress()
        if self.config.save_steps or (resume is not None and resume is not False):
            self._fingerprint = checkpoints.fingerprint(type(self.config).__name__, self.config,
                                                        self._live_adapter_config(), prepared.examples)
            record = self._reference_record()
            if record is not None:
                self._fingerprint["reference"] = record
        self._begin_resume(resume, target, progress)  # a checkpoint of another run raises here
        # The weights of a save are only "good" once a later step computed a finite loss with them (or the run
        # ended normally): a save right after an exploding step (finite but huge weights) is still pending then.
        good = self._resumed_policy if self._resumed_policy is not None else self._snapshot()
        confirmed = False  # does ``target`` hold a confirmed save of this run?
        pending: Any = None  # the snapshot of the last save, while unconfirmed
        pending_step = 0
        start = time.perf_counter()

        def require_finite(when: str) -> None:
            if not self._weights_finite():
                raise TrainingError(f"non-finite weights {when}")
            losses = [h["loss"] for h in progress.history if "loss" in h]
            if losses and not math.isfinite(losses[-1]):
                raise TrainingError(f"non-finite loss ({losses[-1]}) {when}")

        def confirm() -> None:
            nonlocal good, pending, confirmed
            if pending is not None:
                good, pending, confirmed = pending, None, True

        def checkpoint() -> None:
            nonlocal pending, pending_step
            require_finite(f"at the save after step {progress.global_step}")
            confirm()  # reaching another save means every loss since the last one was finite
            self._write_adapter(target)
            self._write_checkpoint(progress, len(prepared.examples), target)
            pending, pending_step = self._snapshot(), progress.global_step
            self._notify_save(target)

        def failed(exc: BaseException) -> TrainingResult:
            nonlocal pending
            self._cleanup()
            if pending is not None and progress.global_step > pending_step:
                confirm()  # a later step trained (finite loss) on the pending save's weights
            self._restore(good)  # back to the last good weights (the last confirmed save, or the start of this run)
            if pending is not None:  # the save on disk may hold the weights that diverged: never keep it
                pending = None
                if confirmed:
                    self._write_adapter(target)
                else:
                    self._remove_adapter(target)
            self._set_eval()
            message = f"out of memory: {exc}" if self._out_of_memory(exc) else f"{type(exc).__name__}: {exc}"
            return self._finish(False, progress, prepared, start, str(target) if confirmed else "", message)

        try:
            if not self._resumed_finished:
                self._train_steps(prepared, progress, checkpoint)
            require_finite("after the last step")
        except ConfigError:
            self._cleanup()
            self._set_eval()
            raise
        except CallbackRaised as exc:  # the user's callback asked to stop (or failed): restore, then let it through
            failed(exc.original)
            raise exc.original from None
        except self.failure_types as exc:
            return failed(exc)
        self._cleanup()
        self._set_eval()
        with phase("save adapter", detail=str(target)):
            self._write_adapter(target)
        with original_callback_errors():
            self._notify_save(target)
        return self._finish(True, progress, prepared, start, str(target), None)

    def _finish(self, success: bool, progress: RunProgress, prepared: Prepared[Any], start: float, adapter: str,
                error: str | None) -> TrainingResult:
        history = progress.history
        metrics: dict[str, Any] = {}
        if history:
            metrics.update({k: v for k, v in history[-1].items() if k != "step"})
        metrics.update(progress.summary)
        metrics["history"] = list(history)
        metrics["global_step"] = progress.global_step
        metrics["total_steps"] = progress.total_steps
        metrics["samples_seen"] = progress.samples_seen
        metrics.update(prepared.stats)
        result = TrainingResult(success=success, final_loss=float(history[-1]["loss"]) if history else progress.fallback_loss,
                                training_time_seconds=time.perf_counter() - start,
                                samples_trained=progress.samples_trained, adapter_path=adapter,
                                error_message=error, metrics=metrics)
        self.last_result = result
        return result
