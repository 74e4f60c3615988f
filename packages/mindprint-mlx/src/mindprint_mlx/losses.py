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
