"""MLXORPOTrainer: hand-written ORPO with TRL 1.16's definitions (``trl.experimental.orpo.ORPOTrainer``).

Per micro-batch, as TRL computes it:

* one padded batch ``[prompt + chosen..., prompt + rejected...]`` (right padding, transformers' padding-aware
  attention mask: :mod:`.padded`);
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
from mindprint_interfaces.data import IGNORE_INDEX, TokenizedPair
from mindprint_interfaces.protocols import TrainerCallback
from mindprint_kit.data import Prepared, prepare_preferences

from . import distributed
from .losses import orpo_odds, token_logprobs
from .model import MLXModel, right_pad
from .padded import masked_logits
from .training import C, MLXTrainerBase


def pair_rows(pairs: Sequence[TokenizedPair], pad_id: int) -> tuple[Any, list[int], Any, Any]:
    """TRL's concatenated batch: ids (2B, T), real lengths, completion labels (prompt and padding -100) and
    full-sequence labels (padding -100)."""
    rows = [list(p.prompt_ids) + list(p.chosen_ids) for p in pairs] + [list(p.prompt_ids) + list(p.rejected_ids)
                                                                      for p in pairs]
    completion = ([[IGNORE_INDEX] * len(p.prompt_ids) + list(p.chosen_ids) for p in pairs]
                  + [[IGNORE_INDEX] * len(p.prompt_ids) + list(p.rejected_ids) for p in pairs])
    return (mx.array(right_pad(rows, pad_id)), [len(r) for r in rows], mx.array(right_pad(completion, IGNORE_INDEX)),
            mx.array(right_pad(rows, IGNORE_INDEX)))


class PairTrainerBase(MLXTrainerBase[C]):
    """ORPO and CPO: pairs, one padded forward per micro-batch, the micro-batch's mean loss, per-micro-batch metrics."""

    def __init__(self, model: MLXModel, config: C, callbacks: Sequence[TrainerCallback] = ()) -> None:
        super().__init__(model, config, callbacks)

        def loss_fn(batch: list[TokenizedPair]) -> tuple[Any, dict[str, Any]]:
            ids, lengths, completion, full = pair_rows(batch, self._model.pad_id)
            logits = masked_logits(self._model.module, ids, lengths)
            return self._loss(logits, completion, full, len(batch))

        self._grad_fn = nn.value_and_grad(model.module, loss_fn)

    def _loss(self, logits: Any, completion: Any, full: Any, b: int) -> tuple[Any, dict[str, Any]]:
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


def _reward_metrics(beta: float, chosen: Any, rejected: Any, logits: Any, b: int, last: bool) -> dict[str, Any]:
    """TRL's rewards/*, logps/*, logits/* (``last``: include the last position in logits/*, as CPO does)."""
    chosen, rejected = mx.stop_gradient(chosen), mx.stop_gradient(rejected)
    view = mx.stop_gradient(logits if last else logits[:, :-1, :])
    cr, rr = beta * chosen, beta * rejected
    return {"rewards/chosen": cr.mean(), "rewards/rejected": rr.mean(),
            "rewards/accuracies": (cr > rr).astype(mx.float32).mean(), "rewards/margins": (cr - rr).mean(),
            "logps/chosen": chosen.mean(), "logps/rejected": rejected.mean(),
            "logits/chosen": view[:b].mean(), "logits/rejected": view[b:].mean()}


class MLXORPOTrainer(PairTrainerBase[ORPOConfig]):
    """ORPO on the shared data layer's pairs; TRL 1.16's loss and metrics; no reference model."""

    def __init__(self, model: MLXModel, config: ORPOConfig, callbacks: Sequence[TrainerCallback] = ()) -> None:
        super().__init__(model, config, callbacks)

    def _loss(self, logits: Any, completion: Any, full: Any, b: int) -> tuple[Any, dict[str, Any]]:
        beta = self.config.beta
        # one log-softmax over every real position serves both terms: the completion tokens' log-probs are the
        # full sequence's at the completion positions (the same targets there)
        per_token_full, full_mask = token_logprobs(logits, full)
        mask = (completion[:, 1:] != IGNORE_INDEX).astype(mx.float32)
        avg = (per_token_full * mask).sum(axis=1) / mask.sum(axis=1)
        chosen, rejected = avg[:b], avg[b:]
        # TRL 1.16: the token mean over the whole chosen sequence, prompt included (torch CrossEntropyLoss)
        nll = -per_token_full[:b].sum() / mx.maximum(full_mask[:b].sum(), 1.0)
        losses, ratio, log_odds = orpo_odds(beta, chosen, rejected)
        loss = nll - losses.mean()
        metrics = {**_reward_metrics(beta, chosen, rejected, logits, b, last=False),
                   "nll_loss": mx.stop_gradient(nll), "log_odds_ratio": mx.stop_gradient(ratio.mean()),
                   "log_odds_chosen": mx.stop_gradient(log_odds.mean())}
        return loss, metrics
