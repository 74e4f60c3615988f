"""Forwards that compute only what reaches the loss: the LM head on loss positions, a DPO prompt once.

The padded batched forward spends much of its compute on results that are thrown away:

* the LM head (hidden x vocab, ~20 % of a small model's FLOPs) runs over every prompt and padding
  position, whose logits are masked out of the loss;
* rows are padded to the longest row of the batch (+16 % tokens on the DPO benchmark set);
* in DPO the prompt goes through the network twice, though chosen and rejected see the same prompt.

Here every example runs unpadded (batch 1) and the head is applied only to the positions that predict
a loss token. For SFT that is :func:`example_ce`. For DPO (:func:`pair_logps`) each pair runs its
prompt once and keeps every layer's keys/values in a differentiable :class:`PrefixCache`; the chosen
and the rejected completion then each run on top of that cache. Gradients flow through the cached
prompt keys/values into both completions, so the maths is the full-sequence forward's; only work
that does not reach the loss is skipped. (On a CPU, batch-1 matrix products of a few hundred rows run
as fast per token as padded batches; a GPU would want several examples per call — not measured here.)

The split "body -> hidden states -> head" and the cache hook are the mlx-lm model layout
(``module.model(inputs, cache=[...])`` then ``lm_head`` or tied ``embed_tokens.as_linear``). Not
every architecture follows it (logit soft-capping, scaled heads, recurrent layers), so
:func:`supports_lean_forward` checks it numerically against the plain forward and the trainers fall
back to the padded batch when it does not hold.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import mlx.core as mx
import mlx.nn as nn
from mlx_lm.models.cache import KVCache

from mindprint_interfaces.data import IGNORE_INDEX, TokenizedPair

from .losses import target_logps, token_logprobs
from .model import right_pad

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


def _head(module: nn.Module) -> Callable[[Any], Any]:
    head = lm_head(module)
    if head is None:
        raise ValueError(f"{type(module).__name__} does not have mlx-lm's body/head layout")
    return head


def _rows_logps(head: Callable[[Any], Any], hidden: Any, targets: Any) -> tuple[Any, Any]:
    """(sum of log p(target), sum over rows of the vocab-mean logit) for hidden rows predicting ``targets``."""
    logits = head(hidden).astype(mx.float32)
    return target_logps(logits, targets), mx.stop_gradient(logits).mean(axis=-1).sum()


def pair_logps(module: nn.Module, pair: TokenizedPair) -> tuple[Any, Any, Any, Any]:
    """(chosen logp, rejected logp, chosen logit sum, rejected logit sum) of one pair, prompt run once.

    Logit sums are the vocab-mean logit summed over completion tokens (TRL's ``logits/*`` numerator).
    """
    head = _head(module)
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


def example_ce(module: nn.Module, input_ids: Sequence[int], labels: Sequence[int]) -> tuple[Any, int]:
    """(summed cross-entropy over the loss tokens, number of loss tokens) of one unpadded example."""
    positions = [t for t in range(len(labels) - 1) if labels[t + 1] != IGNORE_INDEX]
    if not positions:
        return mx.array(0.0), 0
    head = _head(module)
    # positions after the last one predicting a loss token cannot influence the loss (causal attention)
    hidden = module.model(mx.array(list(input_ids[:positions[-1] + 1]))[None])[0]
    targets = mx.array([labels[t + 1] for t in positions])
    logps, _ = _rows_logps(head, hidden[mx.array(positions)], targets)
    return -logps, len(positions)


def batch_ce(module: nn.Module, examples: Sequence[tuple[Sequence[int], Sequence[int]]]) -> tuple[Any, int]:
    """(summed cross-entropy, loss tokens) over (input_ids, labels) examples, each run unpadded."""
    total: Any = mx.array(0.0)
    count = 0
    for input_ids, labels in examples:
        ce, n = example_ce(module, input_ids, labels)
        total, count = total + ce, count + n
    return total, count


def batch_logps(module: nn.Module, pairs: Sequence[TokenizedPair]) -> tuple[Any, Any, Any]:
    """(chosen (B,), rejected (B,), [chosen logit sum, rejected logit sum]) for a list of pairs."""
    per_pair = [pair_logps(module, p) for p in pairs]
    chosen, rejected, chosen_logits, rejected_logits = (mx.stack([p[i] for p in per_pair]) for i in range(4))
    return chosen, rejected, mx.stack([chosen_logits.sum(), rejected_logits.sum()])


def supports_lean_forward(module: nn.Module) -> bool:
    """Whether :func:`pair_logps` reproduces the plain forward on this model (a 6-token probe, eval mode)."""
    if lm_head(module) is None:
        return False
    probe = TokenizedPair(prompt_ids=(1, 2, 3), chosen_ids=(4, 5, 6), rejected_ids=(7,))
    rows = [[*probe.prompt_ids, *c] for c in (probe.chosen_ids, probe.rejected_ids)]
    row_labels = [[IGNORE_INDEX] * len(probe.prompt_ids) + list(c) for c in (probe.chosen_ids, probe.rejected_ids)]
    was_training = module.training
    module.eval()
    try:
        shared = mx.stack(list(pair_logps(module, probe)[:2]))
        plain, _ = token_logprobs(module(mx.array(right_pad(rows, 0))).astype(mx.float32),
                                  mx.array(right_pad(row_labels, IGNORE_INDEX)))
        ce, _ = example_ce(module, rows[0], row_labels[0])
        expected = plain.sum(axis=1)
        ok = mx.all(mx.abs(shared - expected) <= CHECK_TOLERANCE) & (mx.abs(ce + expected[0]) <= CHECK_TOLERANCE)
        return bool(ok.item())
    except (TypeError, ValueError, AttributeError):
        return False  # a body that takes no per-layer cache list, or another layout
    finally:
        module.train(was_training)
