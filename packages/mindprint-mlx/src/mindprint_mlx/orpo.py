"""MLXORPOTrainer: hand-written ORPO with TRL 1.16's definitions (``trl.experimental.orpo.ORPOTrainer``).

Per micro-batch, as TRL computes it:

* one padded batch ``[prompt + chosen..., prompt + rejected...]`` (right padding, transformers' padding-aware
  attention mask: :mod:`.padded`) — or, when the model's probe allows it, the same sums from a lean forward
  (each prompt once, the LM head only where a log-prob is used, padding forward-only for the metrics:
  :mod:`.pair_scores`);
* chosen / rejected log-probs = per-token *mean* of the completion-token log-probs;
* ``log_odds = (c - r) - (log(1 - e^c) - log(1 - e^r))``, ``ratio = log sigmoid(log_odds)``;
* ``nll_loss`` = token-mean cross-entropy over the chosen sequences' real tokens, *prompt included*
  (TRL 1.16 labels the whole chosen sequence; only padding is masked);
* ``loss = nll_loss - beta * mean(ratio)``.

Metrics (TRL's names; per micro-batch means, averaged over the step's micro-batches as TRL's stored
metrics are): ``rewards/chosen`` = mean(beta * c), ``rewards/rejected``, ``rewards/accuracies`` (strict >),
``rewards/margins``, ``logps/chosen``, ``logps/rejected``, ``logits/chosen`` / ``logits/rejected`` (mean over
every position but the last of the padded logits and over the vocabulary), ``nll_loss``,
``log_odds_ratio`` = mean(ratio), ``log_odds_chosen`` = mean(log_odds). No reference model.
The step loss is the mean of the micro-batch losses (the HF Trainer's gradient accumulation).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import mlx.core as mx
import mlx.nn as nn

from mindprint_interfaces import ORPOConfig
from mindprint_interfaces.configs import TrainConfigBase
from mindprint_interfaces.data import TokenizedPair
from mindprint_interfaces.protocols import TrainerCallback
from mindprint_kit.data import Prepared, prepare_preferences

from . import distributed, pair_scores
from .losses import orpo_odds
from .model import MLXModel
from .pair_scores import PairScores
from .training import C, MLXTrainerBase


class PairTrainerBase(MLXTrainerBase[C]):
    """ORPO and CPO: pairs, one padded forward per micro-batch, the micro-batch's mean loss, per-micro-batch metrics."""

    last_position = False  # logits/* count the last padded position (CPO) or not (ORPO)
    prompt_nll = True  # the loss reads the chosen rows' log-probs over the prompt too (ORPO)

    def __init__(self, model: MLXModel, config: C, callbacks: Sequence[TrainerCallback] = ()) -> None:
        super().__init__(model, config, callbacks)
        # the lean forward fills a prefix cache inside the layers, which a checkpointed layer would fill twice
        self.lean_scores = (not config.gradient_checkpointing
                            and pair_scores.supports_lean_scores(model.module, model.pad_id))

        def loss_fn(batch: list[TokenizedPair]) -> tuple[Any, dict[str, Any]]:
            if self.lean_scores:
                scores = pair_scores.lean_scores(self._model.module, batch, self._model.pad_id, self.last_position,
                                                 self.prompt_nll)
            else:
                scores = pair_scores.padded_scores(self._model.module, batch, self._model.pad_id, self.last_position)
            return self._loss(scores, len(batch))

        self._grad_fn = nn.value_and_grad(model.module, loss_fn)

    def _loss(self, scores: PairScores, b: int) -> tuple[Any, dict[str, Any]]:
        raise NotImplementedError

    def _prepare(self, data: Sequence[Mapping[str, Any]], source: str) -> Prepared[TokenizedPair]:
        config: TrainConfigBase = self.config
        return prepare_preferences(self._model.tokenizer, data, config, source)

    def _micro_step(self, examples: list[Any], indices: Sequence[int]) -> tuple[Any, Any, Any, dict[str, Any]]:
        batch: list[TokenizedPair] = [examples[i] for i in indices]
        (loss, metrics), grads = self._grad_fn(batch)
        aux = {"metrics": {k: mx.stop_gradient(v) for k, v in metrics.items()},
               "input_tokens": sum(2 * len(p.prompt_ids) + len(p.chosen_ids) + len(p.rejected_ids) for p in batch)}
        return loss, grads, 1, aux

    def _step_metrics(self, stats: list[dict[str, Any]], norm: float) -> dict[str, float]:
        """Mean over the step's micro-batches (and ranks) of each micro-batch's metrics, as TRL's stored metrics."""
        if not stats:
            return {}
        names = sorted(stats[0]["metrics"])
        sums = mx.stack([mx.stack([s["metrics"][k].astype(mx.float32) for k in names]) for s in stats]).sum(axis=0)
        sums = distributed.all_sum(mx.concatenate([sums, mx.array([float(len(stats))])]))
        values = [float(v) for v in sums.tolist()]
        return {k: values[i] / max(values[-1], 1.0) for i, k in enumerate(names)}


def _reward_metrics(beta: float, chosen: Any, rejected: Any, scores: PairScores, b: int) -> dict[str, Any]:
    """TRL's rewards/*, logps/*, logits/* (mean over the rows' padded positions and the vocabulary)."""
    chosen, rejected = mx.stop_gradient(chosen), mx.stop_gradient(rejected)
    cr, rr = beta * chosen, beta * rejected
    per_row = mx.stop_gradient(scores.logit_sums) / max(scores.positions, 1)
    return {"rewards/chosen": cr.mean(), "rewards/rejected": rr.mean(),
            "rewards/accuracies": (cr > rr).astype(mx.float32).mean(), "rewards/margins": (cr - rr).mean(),
            "logps/chosen": chosen.mean(), "logps/rejected": rejected.mean(),
            "logits/chosen": per_row[:b].mean(), "logits/rejected": per_row[b:].mean()}


class MLXORPOTrainer(PairTrainerBase[ORPOConfig]):
    """ORPO on the shared data layer's pairs; TRL 1.16's loss and metrics; no reference model."""

    def __init__(self, model: MLXModel, config: ORPOConfig, callbacks: Sequence[TrainerCallback] = ()) -> None:
        super().__init__(model, config, callbacks)

    def _loss(self, scores: PairScores, b: int) -> tuple[Any, dict[str, Any]]:
        beta = self.config.beta
        avg = scores.completion_logps / scores.completion_tokens
        chosen, rejected = avg[:b], avg[b:]
        # TRL 1.16: the token mean over the whole chosen sequence, prompt included (torch CrossEntropyLoss)
        nll = -scores.chosen_full_logps.sum() / mx.maximum(scores.chosen_full_tokens.sum(), 1.0)
        losses, ratio, log_odds = orpo_odds(beta, chosen, rejected)
        loss = nll - losses.mean()
        metrics = {**_reward_metrics(beta, chosen, rejected, scores, b),
                   "nll_loss": mx.stop_gradient(nll), "log_odds_ratio": mx.stop_gradient(ratio.mean()),
                   "log_odds_chosen": mx.stop_gradient(log_odds.mean())}
        return loss, metrics
