"""The training data order of the torch backend: the kit's epoch permutations, as MLX walks them.

:func:`mindprint_kit.schedule.epoch_order` gives epoch ``e``'s order (``default_rng(seed + e)``, or in order for
KTO, whose KL completions pair records of fixed-order batches). :class:`PlanSampler` yields it to the HF
Trainer's DataLoader; :class:`PlannedOrder` is mixed into every TRL trainer subclass so the Trainer takes it
(through the hook in :mod:`._compat.transformers`).

Data parallel: every rank builds the same sampler over the whole dataset; accelerate's ``BatchSamplerShard``
gives rank ``r`` the ``r``-th of every ``world`` consecutive micro-batches of ``per_device_batch_size``, so one
global micro-batch is the same ``per_device_batch_size * world`` consecutive examples of the permutation as
MLX's plan (``plan_steps`` with the global batch; MLX splits it ``items[rank::world]``, torch contiguously —
the same examples, so the same summed gradients).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from mindprint_kit.schedule import epoch_order

from ._compat import transformers as transformers_compat

__all__ = ["PlanSampler", "PlannedOrder"]


class PlanSampler(torch.utils.data.Sampler[int]):
    """Epoch ``e`` yields :func:`~mindprint_kit.schedule.epoch_order` ``(n, seed, e, shuffle)``.

    ``set_epoch(e)`` (called by the HF Trainer / accelerate before each epoch) chooses the epoch; without it,
    each new iteration moves on to the next epoch. ``orders`` records every order handed out."""

    def __init__(self, num_examples: int, seed: int, *, shuffle: bool = True) -> None:
        self.num_examples = num_examples
        self.seed = seed
        self.shuffle = shuffle
        self.epoch = 0
        self.orders: list[tuple[int, list[int]]] = []  # (epoch, order) per iteration

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_examples

    def __iter__(self) -> Iterator[int]:
        epoch = self.epoch
        order = epoch_order(self.num_examples, self.seed, epoch, self.shuffle)
        self.orders.append((epoch, order))
        self.epoch = epoch + 1
        return iter(order)


class PlannedOrder(transformers_compat.TrainSamplerHooks):
    """Mixed in before a TRL trainer: its training sampler is the kit's plan, seeded with ``args.seed``;
    ``args.train_sampling_strategy == "sequential"`` (KTO) keeps the data order."""

    args: Any
    train_sampler: PlanSampler | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        transformers_compat.require_train_sampler_hook()
        super().__init__(*args, **kwargs)

    def planned_sampler(self, dataset: Any) -> PlanSampler:
        shuffle = str(getattr(self.args, "train_sampling_strategy", "random")) != "sequential"
        self.train_sampler = PlanSampler(len(dataset), int(self.args.seed), shuffle=shuffle)
        return self.train_sampler
