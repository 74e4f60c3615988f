"""MLXCPOTrainer: hand-written CPO / SimPO with TRL 1.16's definitions (``trl.experimental.cpo.CPOTrainer``).

Per micro-batch, as TRL computes it (same padded batch as :mod:`.orpo`):

* log-probs: completion-token *sums*, or per-token *means* for ``ipo`` and ``simpo`` (SimPO's
  length-normalised reward);
* ``logits = c - r`` (``simpo``: minus the margin ``simpo_gamma / beta``); sigmoid / simpo:
  ``-(1 - ls) log sigmoid(beta logits) - ls log sigmoid(-beta logits)``; hinge ``relu(1 - beta logits)``;
  ipo ``(logits - 1 / (2 beta))^2``;
* ``nll_loss`` = token-mean cross-entropy over the chosen *completions* (prompt masked, unlike ORPO);
  0 when ``cpo_alpha = 0``;
* ``loss = mean(losses) + cpo_alpha * nll_loss``.

Metrics as TRL's: ``rewards/*`` (beta * log-probs), ``logps/*``, ``logits/*`` (mean over every position of
the padded logits, the last one included, as TRL's CPO does), ``nll_loss``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import mlx.core as mx

from mindprint_interfaces import CPOConfig
from mindprint_interfaces.protocols import TrainerCallback

from .losses import cpo_per_example_loss
from .model import MLXModel
from .orpo import PairTrainerBase, _reward_metrics
from .pair_scores import PairScores


class MLXCPOTrainer(PairTrainerBase[CPOConfig]):
    """CPO / SimPO on the shared data layer's pairs; TRL 1.16's losses and metrics; no reference model."""

    last_position = True
    prompt_nll = False

    def __init__(self, model: MLXModel, config: CPOConfig, callbacks: Sequence[TrainerCallback] = ()) -> None:
        super().__init__(model, config, callbacks)

    def _loss(self, scores: PairScores, b: int) -> tuple[Any, dict[str, Any]]:
        cfg = self.config
        logps = scores.completion_logps
        if cfg.loss_type in ("ipo", "simpo"):
            logps = logps / scores.completion_tokens
        chosen, rejected = logps[:b], logps[b:]
        # the chosen completions' token-mean cross-entropy
        nll = (-scores.completion_logps[:b].sum() / mx.maximum(scores.completion_tokens[:b].sum(), 1.0)
               if cfg.cpo_alpha != 0 else mx.array(0.0))
        losses = cpo_per_example_loss(cfg.loss_type, cfg.beta, cfg.label_smoothing, cfg.simpo_gamma, chosen, rejected)
        loss = losses.mean() + cfg.cpo_alpha * nll
        return loss, {**_reward_metrics(cfg.beta, chosen, rejected, scores, b), "nll_loss": mx.stop_gradient(nll)}
