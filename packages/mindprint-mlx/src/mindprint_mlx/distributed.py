"""Data-parallel training with ``mx.distributed`` (docs/architecture.md, "Data parallel").

Launch any script that trains with this backend under mlx's launcher and it runs data parallel::

    mlx.launch -n 2 --backend ring -- python train.py          # 2 processes on this machine (Linux: ring only)
    mlx.launch --hostfile hosts.json --backend ring -- python train.py   # several Macs (or --backend mpi)

Without a launcher ``mx.distributed.init()`` returns a group of size 1 and nothing changes.

What the trainers do with it (``training.MLXTrainerBase``):

* every rank walks the same step plan (same seed); a *global* micro-batch holds
  ``per_device_batch_size * world_size`` examples and rank ``r`` takes the slice ``micro[r::world]``
  (:func:`shard`) — the HF Trainer's meaning of ``per_device_batch_size`` under DDP;
* each rank computes the *sum* of its token losses (SFT) or pair losses (DPO) and their gradients; the
  sums, the normaliser counts and the gradients are added over the ranks with ``all_sum``
  (:func:`all_sum_tree`), and only then divided by the *global* normaliser (loss tokens of all
  micro-batches of all ranks; pairs for DPO) — exactly TRL/HF's ``num_items_in_batch`` with
  ``average_tokens_across_devices=True``. Gradients are summed, never averaged (mlx-lm's
  ``average_gradients`` divides by the world size, which is only right when every rank holds the
  same number of tokens);
* all ranks then hold identical gradients, clip identically and apply the same AdamW update;
* only rank 0 calls the user's callbacks and writes adapters; the other ranks wait at a barrier
  (:func:`barrier`, a tiny ``all_sum``) so nobody reads a half-written adapter.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import mlx.core as mx
from mlx.utils import tree_flatten, tree_unflatten

from mindprint_interfaces import ranks

T = TypeVar("T")

_group: Any = None


def group() -> Any:
    """The global ``mx.distributed`` group (size 1 when the process was not started by a launcher)."""
    global _group
    if _group is None:
        _group = mx.distributed.init()
    return _group


def world_size() -> int:
    return int(group().size())


def rank() -> int:
    return int(group().rank())


def is_main_process() -> bool:
    return rank() == 0


def launched() -> bool:
    """True when this process belongs to a multi-process run."""
    return world_size() > 1


def shard(items: Sequence[T], rank_: int | None = None, world: int | None = None) -> list[T]:
    """The part of a global micro-batch this rank computes: ``items[rank::world]`` (sizes differ by at most 1)."""
    r = rank() if rank_ is None else rank_
    w = world_size() if world is None else world
    return list(items[r::w])


def all_sum(x: Any) -> Any:
    """Sum an array (or a Python number) over all ranks; identity on a single process."""
    if not launched():
        return x if isinstance(x, mx.array) else mx.array(x, dtype=mx.float32)
    arr = x if isinstance(x, mx.array) else mx.array(x, dtype=mx.float32)
    return mx.distributed.all_sum(arr, group=group(), stream=mx.cpu)


def all_sum_tree(tree: Any) -> Any:
    """Sum every array of a (gradient) tree over all ranks in one communication (concat, all_sum, split)."""
    if not launched():
        return tree
    flat = tree_flatten(tree)
    if not flat:
        return tree
    dtype = flat[0][1].dtype
    if any(v.dtype != dtype for _, v in flat):
        return tree_unflatten([(k, all_sum(v)) for k, v in flat])
    shapes = [v.shape for _, v in flat]
    sizes = [v.size for _, v in flat]
    total = all_sum(mx.concatenate([v.reshape(-1) for _, v in flat]))
    out: list[tuple[str, Any]] = []
    offset = 0
    for (key, _), shape, size in zip(flat, shapes, sizes):
        out.append((key, total[offset:offset + size].reshape(shape)))
        offset += size
    return tree_unflatten(out)


def barrier() -> None:
    """Wait until every rank got here (a one-element ``all_sum``)."""
    if launched():
        mx.eval(all_sum(mx.array([1.0])))


def on_main_then_wait(fn: Callable[[], T]) -> T | None:
    """Run ``fn`` on rank 0 only (e.g. write an adapter), then make every rank wait for it."""
    return ranks.on_main_then_wait(fn, is_main=is_main_process(), barrier=barrier)
