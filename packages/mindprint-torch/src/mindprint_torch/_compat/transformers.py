"""Every transformers internal mindprint-torch relies on, verified on the :data:`TESTED` range and nowhere else.

Private names, and why they are used:

* ``Trainer._get_train_sampler(train_dataset=None)`` (overridden by :class:`TrainSamplerHooks`): the HF
  Trainer builds its training DataLoader with the sampler this returns (``get_train_dataloader`` ->
  ``_get_dataloader(sampler_fn=self._get_train_sampler)``), and accelerate wraps it per rank. Ours returns
  the kit's epoch permutations (:mod:`mindprint_torch.sampler`), so torch visits the examples in the order
  MLX does. Required, not a fast path: without it the two backends would train on different batch orders
  from the same seed, so a transformers without it is refused with a clear error
  (:func:`require_train_sampler_hook`), and :class:`TrainSamplerHooks` records that it was called
  (``sampler_hook_calls``), which a test checks after a real training run.

Epochs: ``Trainer._run_epoch`` calls ``set_epoch(epoch)`` on the DataLoader, and accelerate's
``DataLoaderShard.set_epoch`` forwards it to the sampler inside the (sharded) batch sampler; epoch ``e``
then draws permutation ``e``.

The HF Trainer's resume internals (pickle loaders) overridden on the trainer instance:


``Trainer.train(resume_from_checkpoint=dir)`` does the bookkeeping we want (reads ``trainer_state.json``,
sets ``global_step``, skips the trained epochs and micro-batches of the data loader, restores the RNG after
the skip), but loads its state through three private methods whose files are pickles
(``optimizer.pt``, ``scheduler.pt``, ``rng_state.pth``). We must not load pickles, so on the trainer
*instance* :func:`install_resume_hooks` replaces:

* ``_load_from_checkpoint(dir, model=None)``: the adapter is already loaded by the kit (from the
  checkpoint's PEFT files, base and shape checked) — nothing to do;
* ``_load_optimizer_and_scheduler(dir)``: AdamW moments and step from ``optimizer.safetensors``, the LR
  scheduler moved to the checkpoint's step (``load_optimizer``);
* ``_load_rng_state(dir)``: the generators from ``rng_state.safetensors`` (``load_rng``).

A transformers whose train loop stops calling one of them would silently resume with a fresh optimizer:
:class:`ResumeHooks` records each call and :meth:`ResumeHooks.require_taken` raises after training when one
was not taken (a test pins that).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mindprint_interfaces import MindprintError, TrainingError
from mindprint_interfaces.compat import FastPath, Tested, fast_path, method_signature_problem

TESTED = Tested("transformers", "5.24", "6")

SAMPLER_HOOK = "_get_train_sampler"
SAMPLER_HOOK_PARAMS = ("train_dataset",)
TRAIN_SAMPLER = "transformers.train_sampler"


def _sampler_hook_problem() -> str | None:
    try:
        from transformers import Trainer
    except ImportError as exc:
        return f"transformers not importable: {exc}"
    problem = method_signature_problem(Trainer, SAMPLER_HOOK, SAMPLER_HOOK_PARAMS)
    if problem is not None:
        return problem
    source = inspect.getsource(Trainer.get_train_dataloader)
    if SAMPLER_HOOK not in source:
        return f"Trainer.get_train_dataloader no longer builds its sampler with {SAMPLER_HOOK}"
    return None


def require_train_sampler_hook() -> None:
    """Raise when this transformers' Trainer does not take its training sampler from ``_get_train_sampler``."""
    problem = _sampler_hook_problem()
    if problem is not None:
        raise MindprintError(f"mindprint-torch needs transformers {TESTED.specifier} (the kit's data order): {problem}")


class TrainSamplerHooks:
    """Mixed in before an HF/TRL trainer: ``_get_train_sampler`` forwards to :meth:`planned_sampler`,
    which the subclass defines. ``sampler_hook_calls`` counts the calls (proof the hook is taken)."""

    sampler_hook_calls = 0

    def planned_sampler(self, dataset: Any) -> Any:
        raise NotImplementedError

    def _get_train_sampler(self, train_dataset: Any = None) -> Any:
        dataset = train_dataset if train_dataset is not None else getattr(self, "train_dataset", None)
        if dataset is None:
            raise MindprintError("the trainer has no training dataset to sample from")
        self.sampler_hook_calls += 1
        return self.planned_sampler(dataset)


def fast_paths() -> list[FastPath]:
    """Which transformers reach-ins this installation supports, and why not where it does not."""
    return [fast_path(TRAIN_SAMPLER, _sampler_hook_problem())]


LOAD_MODEL = "_load_from_checkpoint"
LOAD_OPTIMIZER = "_load_optimizer_and_scheduler"
LOAD_RNG = "_load_rng_state"
HOOKS = (LOAD_MODEL, LOAD_OPTIMIZER, LOAD_RNG)


@dataclass
class ResumeHooks:
    taken: set[str] = field(default_factory=set)

    def require_taken(self) -> None:
        missing = [name for name in HOOKS if name not in self.taken]
        if missing:
            raise TrainingError(f"resume: transformers' Trainer did not call {', '.join(missing)} (installed "
                                f"{TESTED.installed()}, verified {TESTED.specifier}); the resumed run would not "
                                "continue the checkpoint's state")


def install_resume_hooks(trainer: Any, *, load_optimizer: Callable[[], None],
                         load_rng: Callable[[], None]) -> ResumeHooks:
    """Replace the trainer's pickle-loading resume methods (see the module docstring)."""
    hooks = ResumeHooks()
    for name in HOOKS:
        if not callable(getattr(trainer, name, None)):
            raise TrainingError(f"resume: transformers' Trainer has no {name} (installed {TESTED.installed()}, "
                                f"verified {TESTED.specifier})")

    def load_model(checkpoint: Any, model: Any = None) -> None:
        hooks.taken.add(LOAD_MODEL)

    def optimizer_and_scheduler(checkpoint: Any) -> None:
        if checkpoint is None:
            return
        hooks.taken.add(LOAD_OPTIMIZER)
        load_optimizer()

    def rng_state(checkpoint: Any) -> None:
        if checkpoint is None:
            return
        hooks.taken.add(LOAD_RNG)
        load_rng()

    setattr(trainer, LOAD_MODEL, load_model)
    setattr(trainer, LOAD_OPTIMIZER, optimizer_and_scheduler)
    setattr(trainer, LOAD_RNG, rng_state)
    return hooks
