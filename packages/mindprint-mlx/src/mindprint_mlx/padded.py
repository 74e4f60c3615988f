"""The padded batched forward with an attention mask, as transformers runs a right-padded batch.

Right padding leaves every real position's logits unchanged, but TRL's ORPO and CPO log
``logits/chosen`` / ``logits/rejected`` as the mean over *every* position of the padded logits,
padding included; there transformers' attention mask lets a padding query see only the real keys.
mlx-lm's models take no mask argument, but they ask each layer's cache for one
(``cache.make_mask``) and call ``cache.update_and_fetch`` on its keys and values: :class:`MaskOnly`
is such a cache that stores nothing and answers with the padding-aware causal mask.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import mlx.core as mx
import mlx.nn as nn


class MaskOnly:
    """A per-layer "cache" that keeps nothing (offset 0) and supplies a fixed boolean attention mask."""

    offset = 0

    def __init__(self, mask: Any) -> None:
        self.mask = mask

    def update_and_fetch(self, keys: Any, values: Any) -> tuple[Any, Any]:
        return keys, values

    def make_mask(self, n: int, return_array: bool = False, window_size: int | None = None) -> Any:
        if window_size is not None and window_size < n:
            raise ValueError("sliding-window attention is not supported by the padded forward")
        return self.mask


def attention_mask(lengths: Sequence[int], width: int) -> Any:
    """(B, 1, T, T) bool: query t sees key s when s <= t and s is a real (non-padding) token."""
    pos = mx.arange(width)
    causal = pos[None, :] <= pos[:, None]
    real = pos[None, :] < mx.array(list(lengths))[:, None]
    return (causal[None, :, :] & real[:, None, :])[:, None, :, :]


def num_layers(module: nn.Module) -> int:
    layers = getattr(module, "layers", None)
    if layers is None:
        layers = getattr(getattr(module, "model", None), "layers", None)
    if layers is None:
        raise ValueError("the model has no .layers / .model.layers")
    return len(layers)


def masked_logits(module: nn.Module, ids: Any, lengths: Sequence[int]) -> Any:
    """(B, T, V) float32 logits of right-padded ``ids`` with transformers' padding-aware causal mask."""
    mask = attention_mask(lengths, int(ids.shape[1]))
    caches = [MaskOnly(mask) for _ in range(num_layers(module))]
    return module(ids, cache=caches).astype(mx.float32)
