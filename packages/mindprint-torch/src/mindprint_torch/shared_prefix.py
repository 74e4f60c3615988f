"""DPO batches: each pair's prompt through the backbone once, chosen and rejected continuing from its cache.

TRL's DPO batch is ``[chosen_1..chosen_B, rejected_1..rejected_B]``, each row prompt + completion, right-
padded to the longest row. Row ``i`` and row ``B + i`` start with the same prompt, so the backbone computes
every prompt twice and every row up to the batch's longest length. Here each pair's common prefix runs
once (batch 1, with a KV cache), then both continuations run as one batch of 2 from a copy of that cache,
padded only to the longer of the two. Gradients from both continuations reach the prompt through the
cache. The hidden states are laid out as TRL's padded batch would have them (zeros on padding), so
everything after the backbone — the LM head, the loss, the metrics — is TRL's. Same idea as
``mindprint_mlx.lean_forward``; the compact head's numerical probe decides per model whether it is used.

Causal attention makes this exact: a position only sees earlier positions, and up to the end of the
common prefix the two rows are the same tokens. Right padding after a continuation is never seen by
its real tokens. Batches of another shape (odd rows, left padding, no shared prefix, a row of one token,
extra model inputs) return None: the caller then runs the ordinary batched backbone. Models whose layers
do not work with a plain per-layer cache are refused by the probe in :func:`.compact_head.share_prompts`.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
import torch.nn.functional as F
from transformers import DynamicCache

ATTR = "_mindprint_shared_prefix"  # set on the transformers model: its batches are DPO pairs


def _copied_cache(prompt_cache: Any, rows: int) -> Any:
    """A fresh cache holding the prompt's keys/values for ``rows`` continuations (expanded views: the
    gradient of every continuation flows back into the one prompt forward)."""
    cache = DynamicCache()
    for index, layer in enumerate(prompt_cache.layers):
        cache.update(layer.keys.expand(rows, -1, -1, -1), layer.values.expand(rows, -1, -1, -1), index)
    return cache


_CACHE_ARGUMENT: dict[type, str] = {}


def _cache_argument(backbone: Any) -> str:
    """The KV cache argument: transformers >= 5.2x calls it ``cache``, before that ``past_key_values`` (still
    accepted, with a deprecation warning). Looked up once per backbone class, not per batch."""
    kind = type(backbone)
    if kind not in _CACHE_ARGUMENT:
        takes_cache = "cache" in inspect.signature(kind.forward).parameters
        _CACHE_ARGUMENT[kind] = "cache" if takes_cache else "past_key_values"
    return _CACHE_ARGUMENT[kind]


def _pair_prefixes(backbone: Any, inputs: dict[str, Any]) -> list[tuple[int, int, int]] | None:
    """(common prefix length, row length of chosen, of rejected) for every pair of the padded batch, or None when
    the batch does not have the shape this handles. Decided before any forward, so a decline costs nothing."""
    # PEFT passes unused arguments as None (inputs_embeds, output_attentions, ...)
    if {k for k, v in inputs.items() if v is not None} - {"input_ids", "attention_mask", "use_cache"}:
        return None
    ids, attention = inputs.get("input_ids"), inputs.get("attention_mask")
    if ids is None or attention is None or ids.dim() != 2 or ids.shape[0] % 2:
        return None
    rows, length = ids.shape
    window = getattr(backbone.config, "sliding_window", None)
    if window is not None and window < length:
        return None
    lengths = attention.sum(dim=1)
    if not bool((attention.bool() == (torch.arange(length, device=ids.device) < lengths[:, None])).all()):
        return None  # not right-padded
    pairs = rows // 2
    plan = []
    for first, second in ((i, i + pairs) for i in range(pairs)):
        n_first, n_second = int(lengths[first]), int(lengths[second])
        limit = min(n_first, n_second) - 1  # each continuation keeps at least one token
        if limit < 1:
            return None
        prefix = int((ids[first, :limit] == ids[second, :limit]).int().cumprod(dim=0).sum())
        if prefix < 1:
            return None
        plan.append((prefix, n_first, n_second))
    return plan


def hidden_states(backbone: Any, inputs: dict[str, Any]) -> torch.Tensor | None:
    """``last_hidden_state`` of the padded batch ``inputs`` (``input_ids``, ``attention_mask``), computed pair
    by pair with shared prefixes; None when the batch does not have the shape this handles."""
    plan = _pair_prefixes(backbone, inputs)
    if plan is None:
        return None
    ids = inputs["input_ids"]
    pairs, length = len(plan), ids.shape[1]
    cache_arg = _cache_argument(backbone)
    chosen: list[torch.Tensor] = []
    rejected: list[torch.Tensor] = []
    for first, (prefix, n_first, n_second) in enumerate(plan):
        second = first + pairs
        # a plain per-layer cache of our own, whatever cache type the model would pick by itself
        prompt_cache = DynamicCache()
        head = backbone(input_ids=ids[first:first + 1, :prefix], use_cache=True, **{cache_arg: prompt_cache})
        cache = _copied_cache(prompt_cache, 2)
        tail_len = max(n_first, n_second) - prefix
        tails = torch.stack([ids[first, prefix:prefix + tail_len], ids[second, prefix:prefix + tail_len]])
        tail = backbone(input_ids=tails, use_cache=True, **{cache_arg: cache}).last_hidden_state
        for out, k, n in ((chosen, 0, n_first), (rejected, 1, n_second)):
            states = torch.cat([head.last_hidden_state[0], tail[k, :n - prefix]])
            out.append(F.pad(states, (0, 0, 0, length - n)))
    return torch.stack(chosen + rejected)
