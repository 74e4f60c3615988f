"""The HF Trainer's resume internals mindprint-torch overrides, verified on transformers 5.24.

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

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mindprint_interfaces import TrainingError
from mindprint_interfaces.compat import Tested

TESTED = Tested("transformers", "5.0", "6")

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
