"""The forward of a packed SFT row (``sft.packing``): one sequence, attention kept inside each example.

mlx-lm's models ask each layer's cache for their attention mask (``cache.make_mask``); :class:`PackedMask`
is a cache that stores nothing and answers with the block-diagonal causal mask of the row's examples (and,
for a sliding-window layer, that mask within the window). Positions run on through the row instead of
restarting per example as TRL's ``position_ids`` do: with attention confined to one example, a rotary
embedding sees only the distance between two tokens of the same example, which is the same either way
(mlx's ``fast.rope`` takes one offset per row, not per token). :func:`check_packing` verifies both facts
numerically on the model before training — per-example losses of a packed probe against the unpacked
forward — and a model for which they do not hold (absolute positions, a layer that ignores the mask) is
refused naming ``packing``.

A row is not run as one sequence: its examples are grouped, in order, into sub-rows of at most
:data:`GROUP_TOKENS` tokens (a longer example on its own), and each sub-row runs with its own block mask.
The maths is the same — attention never crosses an example, so cutting the row between examples changes
nothing — but the masked attention costs the sum of the sub-rows' squared lengths instead of the whole
row's: on the bench's long-tailed length mix (1024-token rows) a dense row spent most of its attention on
pairs of positions the mask then discarded. mlx has no variable-length attention kernel on the CPU, so
this is how "no attention across example boundaries" is made cheap; a one-example sub-row is plain causal
attention (mlx-lm's own mask).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx_lm.models.cache import create_attention_mask

from mindprint_interfaces.data import IGNORE_INDEX
from mindprint_interfaces.errors import ConfigError
from mindprint_kit.packing import PackedExample

from .lean_forward import lm_head
from .losses import target_logps
from .padded import num_layers

CHECK_TOLERANCE = 1e-4  # absolute, on each probe example's summed cross-entropy (fp32 agrees to ~1e-6)
GROUP_TOKENS = 256  # longest sub-row of grouped short examples (see the module docstring)


def block_mask(seq_lengths: Sequence[int], window: int | None = None) -> Any:
    """(1, 1, T, T) bool: query t sees key s when both are in the same example and s <= t (and t - s < window)."""
    segment = mx.concatenate([mx.full((n,), i, dtype=mx.int32) for i, n in enumerate(seq_lengths)])
    pos = mx.arange(int(segment.shape[0]))
    mask = (pos[None, :] <= pos[:, None]) & (segment[None, :] == segment[:, None])
    if window is not None:
        mask = mask & (pos[:, None] - pos[None, :] < window)
    return mask[None, None]


class PackedMask:
    """A per-layer "cache" that keeps nothing (offset 0) and supplies the packed row's attention mask."""

    offset = 0

    def __init__(self, seq_lengths: Sequence[int]) -> None:
        self.seq_lengths = tuple(seq_lengths)
        self._masks: dict[int | None, Any] = {}

    def update_and_fetch(self, keys: Any, values: Any) -> tuple[Any, Any]:
        return keys, values

    def make_mask(self, n: int, return_array: bool = False, window_size: int | None = None) -> Any:
        if len(self.seq_lengths) == 1:  # one example: the mask the model makes without a cache
            return create_attention_mask(n, 0, return_array=return_array, window_size=window_size)
        window = window_size if window_size is not None and window_size < n else None
        if window not in self._masks:
            self._masks[window] = block_mask(self.seq_lengths, window)
        return self._masks[window]


def sub_rows(row: PackedExample, limit: int | None = None) -> list[PackedExample]:
    """The row cut between examples into runs of consecutive examples of at most ``limit`` (default
    :data:`GROUP_TOKENS`) tokens each — an example longer than that is a run of its own; together they hold
    the row's tokens in order."""
    limit = GROUP_TOKENS if limit is None else limit
    groups: list[list[int]] = []
    for n in row.seq_lengths:
        if groups and sum(groups[-1]) + n <= limit:
            groups[-1].append(n)
        else:
            groups.append([n])
    out: list[PackedExample] = []
    start = 0
    for lengths in groups:
        end = start + sum(lengths)
        out.append(PackedExample(row.input_ids[start:end], row.labels[start:end], tuple(lengths)))
        start = end
    return out


def packed_ce(module: nn.Module, row: PackedExample) -> tuple[Any, int]:
    """(summed cross-entropy over the row's loss tokens, number of loss tokens), sub-row by sub-row."""
    total: Any = mx.array(0.0)
    count = 0
    for part in sub_rows(row):
        ce, n = _sub_row_ce(module, part)
        if n:
            total, count = total + ce, count + n
    return total, count


def _sub_row_ce(module: nn.Module, row: PackedExample) -> tuple[Any, int]:
    """(summed cross-entropy, loss tokens) of one sequence of whole examples, run with their block mask."""
    positions = [t for t in range(len(row.labels) - 1) if row.labels[t + 1] != IGNORE_INDEX]
    if not positions:
        return mx.array(0.0), 0
    # positions after the last one predicting a loss token cannot reach the loss (causal attention)
    ids = mx.array(list(row.input_ids[:positions[-1] + 1]))[None]
    masks = PackedMask(_cut(row.seq_lengths, positions[-1] + 1))
    caches = [masks for _ in range(num_layers(module))]
    targets = mx.array([row.labels[t + 1] for t in positions])
    head = lm_head(module)
    if head is not None:  # the LM head on the loss positions only
        logits = head(module.model(ids, cache=caches)[0][mx.array(positions)]).astype(mx.float32)
    else:
        logits = module(ids, cache=caches)[0][mx.array(positions)].astype(mx.float32)
    return -target_logps(logits, targets), len(positions)


def _cut(seq_lengths: Sequence[int], total: int) -> tuple[int, ...]:
    """The example lengths of a row's first ``total`` tokens."""
    out: list[int] = []
    for n in seq_lengths:
        if total <= 0:
            break
        out.append(min(n, total))
        total -= n
    return tuple(out)


def batch_packed_ce(module: nn.Module, rows: Sequence[PackedExample]) -> tuple[Any, int]:
    total: Any = mx.array(0.0)
    count = 0
    for row in rows:
        ce, n = packed_ce(module, row)
        total, count = total + ce, count + n
    return total, count


def _probe_rows() -> tuple[list[tuple[list[int], list[int]]], PackedExample]:
    """Three short examples (loss on every token after the first) and the row that packs them."""
    lengths = (7, 5, 6)
    examples, ids, labels = [], [], []
    token = 3
    for n in lengths:
        e_ids = [3 + (token + k * 7) % 97 for k in range(n)]  # ids every vocabulary has
        token += 11
        e_labels = [IGNORE_INDEX, *e_ids[1:]]
        examples.append((e_ids, e_labels))
        ids += e_ids
        labels += e_labels
    return examples, PackedExample(tuple(ids), tuple(labels), lengths)


def check_packing(module: nn.Module) -> None:
    """Raise ConfigError (field ``packing``) unless a packed row gives each example its unpacked loss."""
    examples, row = _probe_rows()
    was_training = module.training
    module.eval()
    try:
        unpacked = [_plain_ce(module, ids, labels) for ids, labels in examples]
        packed = [packed_ce(module, row.only(k))[0] for k in range(len(row.seq_lengths))]
        gaps = np.abs(np.array(mx.stack(packed) - mx.stack(unpacked)))
    finally:
        module.train(was_training)
    worst = float(gaps.max())
    if not worst <= CHECK_TOLERANCE:
        raise ConfigError(f"packing: this model's layers do not keep a packed row's examples apart on MLX (a packed "
                          f"example's loss differs from its unpacked loss by {worst:.2e}); set sft.packing: false")


def _plain_ce(module: nn.Module, ids: list[int], labels: list[int]) -> Any:
    """Summed cross-entropy of one example through the model's own forward (no cache, no mask)."""
    logits = module(mx.array(ids)[None])[0, :-1].astype(mx.float32)
    targets = mx.array(labels[1:])
    keep = targets != IGNORE_INDEX
    picked = mx.take_along_axis(logits, mx.maximum(targets, 0)[:, None], axis=-1).squeeze(-1)
    return (-(picked - mx.logsumexp(logits, axis=-1)) * keep).sum()
