"""Padding-free packing of SFT examples (``sft.packing: true``), the same rows on both backends.

Whole examples are packed into rows of at most ``max_length`` tokens by Best Fit Decreasing — TRL's
``pack_dataset(strategy="bfd")`` (Ding et al. 2024, "Fewer Truncations Improve Language Modeling"), reproduced
here bin for bin, so that the torch backend (which hands these rows to TRL's padding-free collator) and the
MLX backend (which has no packing of its own) train on the same rows in the same order; a test checks the bins
against TRL's own. A row keeps its examples' boundaries (``seq_lengths``): positions restart per example and
attention never crosses a boundary, so every example's loss is its unpacked loss. The first token of every
example carries no label (TRL's collator masks it too): it would be predicted from the previous example.

The examples are binned in chunks of :data:`CHUNK` in data order, as TRL's batched ``datasets.map`` does.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Sequence
from dataclasses import dataclass

from mindprint_interfaces.data import IGNORE_INDEX, TokenizedExample

__all__ = ["CHUNK", "PackedExample", "bfd_bins", "pack_examples"]

CHUNK = 1000  # datasets.map(batched=True)'s default batch size: TRL packs each such chunk on its own


@dataclass(frozen=True)
class PackedExample:
    """One packed row: the examples' tokens back to back, their labels, and each example's length."""

    input_ids: tuple[int, ...]
    labels: tuple[int, ...]  # IGNORE_INDEX on each example's first token and where the example has no loss
    seq_lengths: tuple[int, ...]

    @property
    def num_loss_tokens(self) -> int:
        return sum(1 for t in self.labels if t != IGNORE_INDEX)

    def only(self, k: int) -> PackedExample:
        """The same row with loss on its ``k``-th example only (to read one example's loss off a packed forward)."""
        start, n = self.starts[k], self.seq_lengths[k]
        labels = [IGNORE_INDEX] * len(self.labels)
        labels[start + 1:start + n] = self.labels[start + 1:start + n]
        return PackedExample(self.input_ids, tuple(labels), self.seq_lengths)

    @property
    def starts(self) -> tuple[int, ...]:
        """The position of each example's first token in the row."""
        out, at = [], 0
        for n in self.seq_lengths:
            out.append(at)
            at += n
        return tuple(out)


class _SpaceTree:
    """Max segment tree over the free spaces 1..capacity: the smallest free space >= a length, in O(log n)."""

    def __init__(self, capacity: int) -> None:
        self.size = 1 << (capacity - 1).bit_length()
        self.tree = [0] * (2 * self.size)

    def _set(self, space: int, value: int) -> None:
        i = self.size + space - 1
        self.tree[i] = value
        while i > 1:
            i >>= 1
            self.tree[i] = max(self.tree[2 * i], self.tree[2 * i + 1])

    def add(self, space: int) -> None:
        self._set(space, space)

    def remove(self, space: int) -> None:
        self._set(space, 0)

    def search(self, length: int) -> int:
        i = 1
        while i < self.size:
            i = 2 * i if self.tree[2 * i] >= length else 2 * i + 1
        return self.tree[i]


def _bfd_chunk(lengths: Sequence[int], capacity: int, first: int) -> list[list[int]]:
    tree = _SpaceTree(capacity)
    tree.add(capacity)  # a fresh bin is always available
    by_space: dict[int, deque[list[int]]] = defaultdict(deque)
    bins: list[list[int]] = []
    # longest first; equal lengths keep data order (a stable sort, as pyarrow's)
    for idx in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        length = lengths[idx]
        space = tree.search(length)
        if space < capacity:
            members = by_space[space].popleft()
            if not by_space[space]:
                tree.remove(space)
        else:
            members = []
            bins.append(members)
        members.append(first + idx)
        space -= length
        by_space[space].append(members)
        if space > 0:
            tree.add(space)
    return bins


def bfd_bins(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Indices of the examples in each packed row, as TRL's ``pack_dataset(strategy="bfd")`` orders them."""
    if any(n <= 0 or n > capacity for n in lengths):
        raise ValueError(f"every example must have 1..{capacity} tokens to be packed")
    bins: list[list[int]] = []
    for start in range(0, len(lengths), CHUNK):
        bins.extend(_bfd_chunk(lengths[start:start + CHUNK], capacity, start))
    return bins


def pack_examples(examples: Sequence[TokenizedExample], max_length: int) -> list[PackedExample]:
    """The examples (already truncated to ``max_length``) packed into rows of at most ``max_length`` tokens."""
    rows = []
    for members in bfd_bins([len(e.input_ids) for e in examples], max_length):
        ids: list[int] = []
        labels: list[int] = []
        for i in members:
            ex = examples[i]
            ids.extend(ex.input_ids)
            labels.append(IGNORE_INDEX)
            labels.extend(ex.labels[1:])
        rows.append(PackedExample(tuple(ids), tuple(labels), tuple(len(examples[i].input_ids) for i in members)))
    return rows
