"""Loss maths shared by forward(), SFT and DPO — the same definitions as transformers/TRL.

* Causal shift: position t predicts token t+1; label -100 is ignored.
* SFT: sum of token cross-entropies / number of loss tokens of the whole accumulated batch.
* DPO: TRL 1.16 ``DPOTrainer._compute_loss`` (sigmoid, hinge, ipo per-token normalised, robust).
"""

from __future__ import annotations

from typing import Any

import mlx.core as mx
import mlx.nn as nn

from mindprint_interfaces.data import IGNORE_INDEX


def token_logprobs(logits: Any, labels: Any) -> tuple[Any, Any]:
    """Per-token log p(label) for shifted labels: ((B, T-1) logprobs * mask, (B, T-1) float mask)."""
    logits = logits[:, :-1, :].astype(mx.float32)
    targets = labels[:, 1:]
    mask = targets != IGNORE_INDEX
    safe = mx.where(mask, targets, 0)
    picked = mx.take_along_axis(logits, safe[..., None], axis=-1).squeeze(-1)
    logps = picked - mx.logsumexp(logits, axis=-1)
    maskf = mask.astype(mx.float32)
    return logps * maskf, maskf


def target_logps(logits: Any, targets: Any) -> Any:
    """Sum of log p(target) over rows of (N, V) logits, each row predicting its target (no mask)."""
    logits = logits.astype(mx.float32)
    picked = mx.take_along_axis(logits, targets[:, None], axis=-1).squeeze(-1)
    return (picked - mx.logsumexp(logits, axis=-1)).sum()


def ce_sum_and_count(logits: Any, labels: Any) -> tuple[Any, Any]:
    """Summed cross-entropy over loss tokens and the number of loss tokens."""
    logps, mask = token_logprobs(logits, labels)
    return -logps.sum(), mask.sum()


def dpo_per_example_loss(loss_type: str, beta: float, label_smoothing: float,
                         policy_chosen: Any, policy_rejected: Any, ref_chosen: Any, ref_rejected: Any,
                         chosen_tokens: Any, rejected_tokens: Any) -> Any:
    """Per-pair DPO loss exactly as TRL 1.16 (reverse-KL f-divergence, i.e. standard DPO)."""
    chosen_scores = policy_chosen - ref_chosen
    rejected_scores = policy_rejected - ref_rejected
    delta = chosen_scores - rejected_scores
    if loss_type == "sigmoid":
        return -nn.log_sigmoid(beta * delta)
    if loss_type == "hinge":
        return nn.relu(1 - beta * delta)
    if loss_type == "ipo":
        ipo_delta = chosen_scores / mx.maximum(chosen_tokens, 1.0) - rejected_scores / mx.maximum(rejected_tokens, 1.0)
        return (ipo_delta - 1 / (2 * beta)) ** 2
    if loss_type == "robust":
        clean = -(1 - label_smoothing) * nn.log_sigmoid(beta * delta)
        flipped = -label_smoothing * nn.log_sigmoid(-beta * delta)
        return (clean - flipped) / (1 - 2 * label_smoothing)
    raise ValueError(f"unknown DPO loss_type {loss_type!r}")


# -- the reference-free preference methods and KTO: TRL 1.16's definitions --------------------------------------------
def log1mexp(x: Any) -> Any:
    """log(1 - exp(x)) for x < 0, branching at -ln 2 as TRL's ORPO does."""
    t = -0.6931471805599453
    return mx.where(x < t, mx.log1p(-mx.exp(mx.minimum(x, t))), mx.log(-mx.expm1(mx.maximum(x, t))))


def orpo_odds(beta: float, chosen_avg: Any, rejected_avg: Any) -> tuple[Any, Any, Any]:
    """TRL ``ORPOTrainer.odds_ratio_loss`` on per-token mean log-probs: (beta * log sigmoid(log odds), log sigmoid
    (log odds), log odds), each (B,)."""
    log_odds = (chosen_avg - rejected_avg) - (log1mexp(chosen_avg) - log1mexp(rejected_avg))
    ratio = nn.log_sigmoid(log_odds)
    return beta * ratio, ratio, log_odds


def cpo_per_example_loss(loss_type: str, beta: float, label_smoothing: float, simpo_gamma: float,
                         chosen: Any, rejected: Any) -> Any:
    """TRL ``CPOTrainer.cpo_loss`` (alpha = 0): chosen/rejected are sums, or per-token means for ipo/simpo."""
    logits = chosen - rejected
    if loss_type == "simpo":
        logits = logits - simpo_gamma / beta
    if loss_type in ("sigmoid", "simpo"):
        return (-nn.log_sigmoid(beta * logits) * (1 - label_smoothing)
                - nn.log_sigmoid(-beta * logits) * label_smoothing)
    if loss_type == "hinge":
        return nn.relu(1 - beta * logits)
    if loss_type == "ipo":
        return (logits - 1 / (2 * beta)) ** 2
    raise ValueError(f"unknown CPO loss_type {loss_type!r}")


def kto_losses(loss_type: str, beta: float, logratios: Any, kl: Any, labels: Any) -> Any:
    """TRL ``KTOTrainer`` per-record losses (before the desirable/undesirable weights); labels (B,) bool."""
    if loss_type == "kto":
        chosen = 1 - mx.sigmoid(beta * (logratios - kl))
        rejected = 1 - mx.sigmoid(beta * (kl - logratios))
    elif loss_type == "apo_zero_unpaired":
        chosen = 1 - mx.sigmoid(beta * logratios)
        rejected = mx.sigmoid(beta * logratios)
    else:
        raise ValueError(f"unknown KTO loss_type {loss_type!r}")
    return mx.where(labels, chosen, rejected)


def token_entropy(logits: Any) -> Any:
    """Per-position entropy of softmax(logits) over the vocabulary: (B, T) from (B, T, V)."""
    logits = logits.astype(mx.float32)
    logp = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
    return -(mx.exp(logp) * logp).sum(axis=-1)
