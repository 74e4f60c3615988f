"""Preference-pair log-probs with the prompt run once and the LM head only where a loss is taken.

A DPO pair is (prompt, chosen, rejected). The padded batch ``[prompt+chosen, prompt+rejected]``
spends most of its compute on work whose result is thrown away:

* the prompt goes through the network twice, though both rows see exactly the same prompt tokens;
* the LM head (hidden x vocab, ~20 % of a small model's FLOPs) runs over every prompt and padding
  position, whose logits are masked out of the loss;
* rows are padded to the longest of the four rows of a 2-pair batch (+16 % tokens on the
  benchmark set).

Here each pair runs its prompt once (batch 1, no padding) and keeps every layer's keys/values in a
differentiable :class:`PrefixCache`; the chosen and the rejected completion then each run on top of
that cache, and the head is applied only to the positions that predict a completion token (the last
prompt position and the completion positions but the last). Gradients flow through the cached
prompt keys/values into both completions, so the maths is the full-sequence forward's; only the
work that does not reach the loss is skipped.

The split "body -> hidden states -> head" and the cache hook are the mlx-lm model layout
(``module.model(inputs, cache=[...])`` then ``lm_head`` or tied ``embed_tokens.as_linear``). Not
every architecture follows it (logit soft-capping, scaled heads, recurrent layers), so
:func:`supports_shared_prompt` checks it numerically once per model against the plain forward and
the trainer falls back to the padded batch when it does not hold.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import mlx.core as mx
import mlx.nn as nn
from mlx_lm.models.cache import KVCache

from mindprint_interfaces.data import TokenizedPair

from .losses import token_logprobs

CHECK_TOLERANCE = 1e-3  # absolute, on summed log-probs of a few tokens (fp32 agrees to ~1e-5)


class PrefixCache(KVCache):  # type: ignore[misc]  # mlx-lm ships no type information
    """Per-layer keys/values that are *concatenated*, not written into a buffer, so autodiff sees them.

    mlx-lm's ``KVCache`` writes into a preallocated buffer with slice assignment, mutating an array
    that a second continuation would share. Here every update builds new arrays, so one prompt cache
    can be forked into several continuations.
    """

    keys: Any
    values: Any
    offset: int

    def update_and_fetch(self, keys: Any, values: Any) -> tuple[Any, Any]:
        if self.keys is not None:
            keys = mx.concatenate([self.keys, keys], axis=2)
            values = mx.concatenate([self.values, values], axis=2)
        self.keys, self.values, self.offset = keys, values, keys.shape[2]
        return keys, values

    def fork(self) -> PrefixCache:
        twin = PrefixCache()
        twin.keys, twin.values, twin.offset = self.keys, self.values, self.offset
        return twin


def lm_head(module: nn.Module) -> Callable[[Any], Any] | None:
    """The module's hidden-states -> logits map in mlx-lm's layout, or None if it has another layout."""
    body = getattr(module, "model", None)
    if body is None or not hasattr(body, "layers"):
        return None
    head = getattr(module, "lm_head", None)
    if head is not None:
        return head  # type: ignore[no-any-return]
    embed = getattr(body, "embed_tokens", None)
    if embed is not None and hasattr(embed, "as_linear"):
        return embed.as_linear  # type: ignore[no-any-return]
    return None


def _rows_logps(head: Callable[[Any], Any], hidden: Any, targets: Any) -> tuple[Any, Any]:
    """(sum of log p(target), sum over rows of the vocab-mean logit) for hidden rows predicting ``targets``."""
    logits = head(hidden).astype(mx.float32)
    picked = mx.take_along_axis(logits, targets[:, None], axis=-1).squeeze(-1)
    logps = (picked - mx.logsumexp(logits, axis=-1)).sum()
    return logps, mx.stop_gradient(logits).mean(axis=-1).sum()


def pair_logps(module: nn.Module, pair: TokenizedPair) -> tuple[Any, Any, Any, Any]:
    """(chosen logp, rejected logp, chosen logit sum, rejected logit sum) of one pair, prompt run once.

    Logit sums are the vocab-mean logit summed over completion tokens (TRL's ``logits/*`` numerator).
    """
    head = lm_head(module)
    if head is None:
        raise ValueError(f"{type(module).__name__} does not have mlx-lm's body/head layout")
    body = module.model
    prompt_cache = [PrefixCache() for _ in body.layers]
    last_prompt = body(mx.array(pair.prompt_ids)[None], cache=prompt_cache)[0, -1:]
    out: list[tuple[Any, Any]] = []
    for completion in (pair.chosen_ids, pair.rejected_ids):
        rows = last_prompt
        if len(completion) > 1:
            cache = [c.fork() for c in prompt_cache]
            rows = mx.concatenate([last_prompt, body(mx.array(completion[:-1])[None], cache=cache)[0]], axis=0)
        out.append(_rows_logps(head, rows, mx.array(completion)))
    (chosen, chosen_logits), (rejected, rejected_logits) = out
    return chosen, rejected, chosen_logits, rejected_logits


def batch_logps(module: nn.Module, pairs: Sequence[TokenizedPair]) -> tuple[Any, Any, Any]:
    """(chosen (B,), rejected (B,), [chosen logit sum, rejected logit sum]) for a list of pairs."""
    per_pair = [pair_logps(module, p) for p in pairs]
    chosen, rejected, chosen_logits, rejected_logits = (mx.stack([p[i] for p in per_pair]) for i in range(4))
    return chosen, rejected, mx.stack([chosen_logits.sum(), rejected_logits.sum()])


def supports_shared_prompt(module: nn.Module) -> bool:
    """Whether :func:`pair_logps` reproduces the plain forward on this model (a 6-token probe, eval mode)."""
    if lm_head(module) is None:
        return False
    probe = TokenizedPair(prompt_ids=(1, 2, 3), chosen_ids=(4, 5, 6), rejected_ids=(7,))
    ids = mx.array([[1, 2, 3, 4, 5, 6], [1, 2, 3, 7, 0, 0]])
    labels = mx.array([[-100, -100, -100, 4, 5, 6], [-100, -100, -100, 7, -100, -100]])
    was_training = module.training
    module.eval()
    try:
        shared = mx.stack(list(pair_logps(module, probe)[:2]))
        plain, _ = token_logprobs(module(ids).astype(mx.float32), labels)
        return bool(mx.all(mx.abs(shared - plain.sum(axis=1)) <= CHECK_TOLERANCE).item())
    except (TypeError, ValueError, AttributeError):
        return False  # a body that takes no per-layer cache list, or another layout
    finally:
        module.train(was_training)
