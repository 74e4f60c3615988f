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
"""

from __future__ import annotations

import inspect
from typing import Any

from mindprint_interfaces import MindprintError
from mindprint_interfaces.compat import FastPath, Tested, fast_path

TESTED = Tested("transformers", "5.24", "6")

SAMPLER_HOOK = "_get_train_sampler"
SAMPLER_HOOK_PARAMS = ("train_dataset",)
TRAIN_SAMPLER = "transformers.train_sampler"


def _sampler_hook_problem() -> str | None:
    try:
        from transformers import Trainer
    except ImportError as exc:
        return f"transformers not importable: {exc}"
    hook = getattr(Trainer, SAMPLER_HOOK, None)
    if hook is None:
        return f"Trainer no longer has {SAMPLER_HOOK}"
    found = tuple(p for p in inspect.signature(hook).parameters if p != "self")
    if found != SAMPLER_HOOK_PARAMS:
        return f"Trainer.{SAMPLER_HOOK} takes ({', '.join(found)}), not ({', '.join(SAMPLER_HOOK_PARAMS)})"
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
