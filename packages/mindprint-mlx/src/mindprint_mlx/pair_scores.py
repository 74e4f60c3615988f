"""What ORPO and CPO read off a micro-batch of pairs, from the padded forward or from a lean one.

TRL's ORPO and CPO run one right-padded batch ``[prompt + chosen..., prompt + rejected...]`` and read from its
logits: each row's completion log-prob sum and token count, the chosen rows' log-prob sum over every real token
(ORPO's NLL counts the prompt), and for the ``logits/*`` metrics the vocab-mean logit summed over the padded
positions (every position but the last for ORPO, all of them for CPO), padding included. :class:`PairScores`
holds exactly those sums, so the losses and metrics are written once (:mod:`.orpo`, :mod:`.cpo`).

:func:`padded_scores` computes them as TRL does. :func:`lean_scores` computes the same numbers with less work,
per pair: the prompt runs once into a :class:`~.lean_forward.PrefixCache` that both completions continue from;
the LM head runs only on positions whose log-prob is used; the vocab-mean logit needs no head at all — it is
linear in the hidden state, ``mean_v(h . W_v + b_v) = h . mean_v(W_v) + mean_v(b_v)``; and the padding
positions, which only the (stop-gradient) metric reads, run forward only, after the real tokens, seeing the
real keys and not each other — as transformers' padding-aware mask lets a padding query see only the real
keys (:mod:`.padded`). :func:`supports_lean_scores` checks on a probe that both give the same sums.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import mlx.core as mx
import mlx.nn as nn

from mindprint_interfaces.data import IGNORE_INDEX, TokenizedPair

from .lean_forward import PrefixCache, lm_head
from .losses import target_logps, token_logprobs
from .model import right_pad
from .padded import masked_logits

CHECK_TOLERANCE = 1e-4  # absolute, on the probe's sums (fp32 agrees to ~1e-6)


@dataclass(frozen=True)
class PairScores:
    """Sums over one micro-batch of B pairs; rows are ``[chosen_1..chosen_B, rejected_1..rejected_B]``."""

    completion_logps: Any  # (2B,) sum of the completion tokens' log-probs
    completion_tokens: Any  # (2B,) float
    chosen_full_logps: Any  # (B,) sum of log-probs over every real token of the chosen row but the first
    chosen_full_tokens: Any  # (B,) float
    logit_sums: Any  # (2B,) vocab-mean logit summed over the row's positions (see ``last``), padding included
    positions: int  # positions per row in ``logit_sums``: T - 1, or T with ``last``


def pair_rows(pairs: Sequence[TokenizedPair], pad_id: int) -> tuple[Any, list[int], Any, Any]:
    """TRL's concatenated batch: ids (2B, T), real lengths, completion labels (prompt and padding -100) and
    full-sequence labels (padding -100)."""
    rows = [list(p.prompt_ids) + list(p.chosen_ids) for p in pairs] + [list(p.prompt_ids) + list(p.rejected_ids)
                                                                      for p in pairs]
    completion = ([[IGNORE_INDEX] * len(p.prompt_ids) + list(p.chosen_ids) for p in pairs]
                  + [[IGNORE_INDEX] * len(p.prompt_ids) + list(p.rejected_ids) for p in pairs])
    return (mx.array(right_pad(rows, pad_id)), [len(r) for r in rows], mx.array(right_pad(completion, IGNORE_INDEX)),
            mx.array(right_pad(rows, IGNORE_INDEX)))


def padded_scores(module: nn.Module, pairs: Sequence[TokenizedPair], pad_id: int, last: bool) -> PairScores:
    """The sums from TRL's padded batch (``last``: count the last padded position in ``logit_sums``)."""
    ids, lengths, completion, full = pair_rows(pairs, pad_id)
    logits = masked_logits(module, ids, lengths)
    b = len(pairs)
    comp, comp_mask = token_logprobs(logits, completion)
    full_sum, full_mask = token_logprobs(logits[:b], full[:b])
    view = mx.stop_gradient(logits if last else logits[:, :-1, :])
    return PairScores(comp.sum(axis=1), comp_mask.sum(axis=1), full_sum.sum(axis=1), full_mask.sum(axis=1),
                      view.mean(axis=-1).sum(axis=1), int(view.shape[1]))


MEAN_LOGIT_CHUNK = 256  # identity rows per head call when the head's weight cannot be read directly


def _mean_logit(head: Callable[[Any], Any], hidden_size: int) -> tuple[Any, Any]:
    """(the head's weight rows averaged over the vocabulary (H,), the mean bias): the vocab-mean logit of a
    hidden state h is ``h . w + b``. Read off the weight of a plain Linear / Embedding head; any other head
    (quantized, adapted) is linear too, so it is applied to the identity rows, a chunk at a time."""
    holder: Any = getattr(head, "__self__", head)  # embed_tokens.as_linear -> the embedding
    if type(holder) in (nn.Linear, nn.Embedding):
        bias = holder.bias if type(holder) is nn.Linear and "bias" in holder else None
        return (mx.stop_gradient(holder.weight.astype(mx.float32).mean(axis=0)),
                mx.stop_gradient(bias.astype(mx.float32).mean()) if bias is not None else mx.array(0.0))
    zero = mx.stop_gradient(head(mx.zeros((1, hidden_size))).astype(mx.float32)[0])
    parts = [mx.stop_gradient(head(mx.eye(hidden_size)[start:start + MEAN_LOGIT_CHUNK]).astype(mx.float32)
                              - zero).mean(axis=-1)
             for start in range(0, hidden_size, MEAN_LOGIT_CHUNK)]
    return mx.concatenate(parts), zero.mean()


def _logit_sum(hidden: Any, mean_w: Any, mean_b: Any) -> Any:
    """The vocab-mean logit summed over hidden rows (no gradient: it feeds the logits/* metrics only)."""
    return (mx.stop_gradient(hidden).astype(mx.float32) @ mean_w).sum() + mean_b * hidden.shape[0]


def _head_logps(head: Callable[[Any], Any], hidden: Any, targets: Sequence[int]) -> Any:
    """Sum of log p(target) for hidden rows predicting ``targets``."""
    return target_logps(head(hidden), mx.array(list(targets)))


class _PaddingCache(PrefixCache):
    """A row's cache for its padding tokens: each padding query sees the row's real keys, not the padding."""

    def make_mask(self, n: int, return_array: bool = False, window_size: int | None = None) -> Any:
        if window_size is not None and window_size < self.offset + n:
            raise ValueError("sliding-window attention is not supported by the padded forward")
        return mx.arange(self.offset + n)[None, None, None, :] < self.offset


def _completion_row(body: Any, head: Callable[[Any], Any], prompt_cache: list[PrefixCache], last_prompt: Any,
                    completion: Sequence[int], pad_id: int, positions: int, mean_w: Any,
                    mean_b: Any) -> tuple[Any, Any]:
    """(completion logp sum, vocab-mean logit summed over the row's positions from the first completion token
    up to ``positions``, padding included) for one completion continuing from the prompt's cache."""
    cache = [c.fork() for c in prompt_cache]
    n_prompt = int(prompt_cache[0].offset)
    hidden = body(mx.array(list(completion))[None], cache=cache)[0]  # positions n_prompt .. L-1
    logps = _head_logps(head, mx.concatenate([last_prompt, hidden[:-1]], axis=0), completion)
    logit_sum = _logit_sum(hidden[:max(0, min(len(completion), positions - n_prompt))], mean_w, mean_b)
    pads = positions - int(cache[0].offset)
    if pads > 0:
        pad_cache = []
        for c in cache:
            twin = _PaddingCache()
            twin.keys, twin.values, twin.offset = c.keys, c.values, c.offset
            pad_cache.append(twin)
        pad_hidden = body(mx.full((1, pads), pad_id, dtype=mx.int32), cache=pad_cache)[0]
        logit_sum = logit_sum + _logit_sum(pad_hidden, mean_w, mean_b)
    return logps, logit_sum


def lean_scores(module: nn.Module, pairs: Sequence[TokenizedPair], pad_id: int, last: bool,
                prompt_nll: bool = True) -> PairScores:
    """The same sums as :func:`padded_scores`, each pair's prompt run once and no padded work with gradients
    (``prompt_nll=False``: ``chosen_full_*`` are left 0 — CPO's NLL does not read them)."""
    head = lm_head(module)
    if head is None:
        raise ValueError(f"{type(module).__name__} does not have mlx-lm's body/head layout")
    body = module.model
    width = max(len(p.prompt_ids) + max(len(p.chosen_ids), len(p.rejected_ids)) for p in pairs)
    positions = width if last else width - 1
    b = len(pairs)
    comp: list[Any] = [None] * (2 * b)
    sums: list[Any] = [None] * (2 * b)
    full: list[Any] = []
    mean_w = mean_b = None
    for i, pair in enumerate(pairs):
        prompt_cache = [PrefixCache() for _ in body.layers]
        prompt_hidden = body(mx.array(list(pair.prompt_ids))[None], cache=prompt_cache)[0]
        if mean_w is None:
            mean_w, mean_b = _mean_logit(head, int(prompt_hidden.shape[-1]))
        prompt_logit_sum = _logit_sum(prompt_hidden[:positions], mean_w, mean_b)
        for k, completion in ((i, pair.chosen_ids), (b + i, pair.rejected_ids)):
            comp[k], logit_sum = _completion_row(body, head, prompt_cache, prompt_hidden[-1:], completion, pad_id,
                                                 positions, mean_w, mean_b)
            sums[k] = logit_sum + prompt_logit_sum
        if prompt_nll:  # ORPO's NLL also scores the chosen row's prompt tokens after the first
            prompt_logps = (_head_logps(head, prompt_hidden[:-1], pair.prompt_ids[1:])
                            if len(pair.prompt_ids) > 1 else mx.array(0.0))
            full.append(comp[i] + prompt_logps)
        else:
            full.append(mx.array(0.0))
    tokens = [float(len(p.chosen_ids)) for p in pairs] + [float(len(p.rejected_ids)) for p in pairs]
    full_tokens = [float(len(p.prompt_ids) + len(p.chosen_ids) - 1) if prompt_nll else 0.0 for p in pairs]
    return PairScores(mx.stack(comp), mx.array(tokens), mx.stack(full), mx.array(full_tokens), mx.stack(sums),
                      positions)


_PROBE = (TokenizedPair(prompt_ids=(1, 2, 3), chosen_ids=(4, 5, 6), rejected_ids=(7,)),
          TokenizedPair(prompt_ids=(8, 9), chosen_ids=(10,), rejected_ids=(11, 12, 13, 14)))


def supports_lean_scores(module: nn.Module, pad_id: int) -> bool:
    """Whether :func:`lean_scores` reproduces :func:`padded_scores` on this model (two probe pairs, eval mode)."""
    if lm_head(module) is None:
        return False
    was_training = module.training
    module.eval()
    try:
        for last in (False, True):
            lean, plain = lean_scores(module, _PROBE, pad_id, last), padded_scores(module, _PROBE, pad_id, last)
            for name in ("completion_logps", "completion_tokens", "chosen_full_logps", "chosen_full_tokens",
                         "logit_sums"):
                gap = mx.abs(getattr(lean, name) - getattr(plain, name)).max()
                if not bool(gap <= CHECK_TOLERANCE):
                    return False
            if lean.positions != plain.positions:
                return False
        return True
    except (TypeError, ValueError, AttributeError):
        return False  # a body that takes no per-layer cache list, or another layout
    finally:
        module.train(was_training)
