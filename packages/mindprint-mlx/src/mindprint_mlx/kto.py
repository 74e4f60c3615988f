"""MLXKTOTrainer: hand-written KTO with TRL 1.16's definitions (``trl.KTOTrainer``).

* Records: the data layer's unpaired records (paired files unpaired as TRL does); batches in data
  order (TRL requires sequential sampling for the KL pairing).
* KL completions as TRL builds them: within each block of ``per_device_batch_size`` consecutive records
  the completions rotate by one, ``(x_i, y_{i-1})``, the first record taking the block's last completion;
  the KL sequence is cut to ``max_length`` as TRL's collator cuts it.
* Log-probs: completion-token sums. The reference (the model when KTO starts, or adapters off for
  ``reference="base"``) is fixed, so its log-probs of both sequences are computed once before the first
  step. The policy's KL log-probs carry no gradient (TRL computes them under ``no_grad``).
* Per micro-batch: ``kl = max(mean(KL_logps - ref_KL_logps), 0)``; desirable:
  ``1 - sigmoid(beta (logratio - kl))``, undesirable: ``1 - sigmoid(beta (kl - logratio))``
  (``apo_zero_unpaired``: ``1 - sigmoid(beta logratio)`` / ``sigmoid(beta logratio)``), weighted by
  ``desirable_weight`` / ``undesirable_weight``; loss = their mean.
* Metrics (TRL's names, per micro-batch, averaged over the micro-batches that have them): ``kl``,
  ``entropy`` (mean over completion tokens), ``logits/chosen`` / ``logits/rejected`` (vocab-mean logits per
  completion token), ``rewards/chosen`` / ``logps/chosen`` (per desirable record), ``rewards/rejected`` /
  ``logps/rejected``, ``rewards/margins`` (when both kinds are present), ``num_tokens``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import Any

import mlx.core as mx
import mlx.nn as nn

from mindprint_interfaces import ConfigError, KTOConfig
from mindprint_interfaces.data import IGNORE_INDEX, TokenizedUnpaired
from mindprint_interfaces.protocols import TrainerCallback
from mindprint_kit.data import Prepared, prepare_unpaired

from . import distributed, lora
from .losses import kto_losses, token_entropy, token_logprobs
from .model import MLXModel, right_pad
from .training import MLXTrainerBase

REF_CHUNK = 8


def kl_completions(completions: Sequence[Sequence[int]], block: int) -> list[tuple[int, ...]]:
    """TRL's mismatched completions: per block of ``block`` records, (y_1..y_n) -> (y_n, y_1, ..., y_{n-1})."""
    out: list[tuple[int, ...]] = []
    for start in range(0, len(completions), block):
        chunk = [tuple(c) for c in completions[start:start + block]]
        out += [chunk[-1], *chunk[:-1]]
    return out


def rows(prompts: Sequence[Sequence[int]], completions: Sequence[Sequence[int]], max_length: int,
         pad_id: int) -> tuple[Any, Any]:
    """Right-padded prompt + completion ids and completion labels, each sequence cut to ``max_length``."""
    ids = [(list(p) + list(c))[:max_length] for p, c in zip(prompts, completions, strict=True)]
    labels = [([IGNORE_INDEX] * len(p) + list(c))[:max_length] for p, c in zip(prompts, completions, strict=True)]
    return mx.array(right_pad(ids, pad_id)), mx.array(right_pad(labels, IGNORE_INDEX))


class MLXKTOTrainer(MLXTrainerBase[KTOConfig]):
    shuffle_data = False

    def __init__(self, model: MLXModel, config: KTOConfig, ref_model: MLXModel | None = None,
                 callbacks: Sequence[TrainerCallback] = ()) -> None:
        if ref_model is not None:
            raise ConfigError("ref_model: KTO's reference is the initial policy or the base model "
                              "(set reference); an explicit reference model is not supported", key="ref_model")
        super().__init__(model, config, callbacks)
        self._kl: list[tuple[int, ...]] = []
        self._ref: Any = None
        self._ref_kl: Any = None
        cfg = config

        def loss_fn(ids: Any, labels: Any, flags: Any, ref: Any, kl: Any) -> tuple[Any, Any, Any, Any]:
            logits = self._model.logits(ids)
            per_token, mask = token_logprobs(logits, labels)
            logps = per_token.sum(axis=1)
            weights = mx.where(flags, cfg.desirable_weight, cfg.undesirable_weight)
            losses = weights * kto_losses(cfg.loss_type, cfg.beta, logps - ref, kl, flags)
            return losses.mean(), mx.stop_gradient(logps), mx.stop_gradient(logits), mask

        self._grad_fn = nn.value_and_grad(model.module, loss_fn)

    def _prepare(self, data: Sequence[Mapping[str, Any]], source: str) -> Prepared[TokenizedUnpaired]:
        return prepare_unpaired(self._model.tokenizer, data, self.config, source)

    def _sequence_logps(self, prompts: Sequence[Sequence[int]], completions: Sequence[Sequence[int]]) -> Any:
        ids, labels = rows(prompts, completions, self.config.max_length, self._model.pad_id)
        per_token, _ = token_logprobs(self._model.logits(ids), labels)
        return mx.stop_gradient(per_token.sum(axis=1))

    def _start(self, examples: list[Any]) -> None:
        self._kl = kl_completions([e.completion_ids for e in examples], self.config.per_device_batch_size)
        ref: list[Any] = []
        ref_kl: list[Any] = []
        was_training = self._model.module.training
        self._model.module.eval()
        base = self.config.reference == "base"
        try:
            with lora.adapters_disabled(self._model.module) if base else contextlib.nullcontext():
                for start in range(0, len(examples), REF_CHUNK):
                    chunk = examples[start:start + REF_CHUNK]
                    prompts = [e.prompt_ids for e in chunk]
                    r = self._sequence_logps(prompts, [e.completion_ids for e in chunk])
                    k = self._sequence_logps(prompts, self._kl[start:start + REF_CHUNK])
                    mx.eval(r, k)
                    ref.append(r)
                    ref_kl.append(k)
        finally:
            self._model.module.train(was_training)
        self._ref, self._ref_kl = mx.concatenate(ref), mx.concatenate(ref_kl)

    def _cleanup(self) -> None:
        self._ref = self._ref_kl = None

    def _micro_step(self, examples: list[Any], indices: Sequence[int]) -> tuple[Any, Any, Any, dict[str, Any]]:
        cfg = self.config
        batch: list[TokenizedUnpaired] = [examples[i] for i in indices]
        idx = mx.array(list(indices))
        prompts = [e.prompt_ids for e in batch]
        kl_logps = self._sequence_logps(prompts, [self._kl[i] for i in indices])
        kl = mx.maximum((kl_logps - self._ref_kl[idx]).mean(), 0.0)
        ids, labels = rows(prompts, [e.completion_ids for e in batch], cfg.max_length, self._model.pad_id)
        flags = mx.array([e.label for e in batch])
        ref = self._ref[idx]
        (loss, logps, logits, mask), grads = self._grad_fn(ids, labels, flags, ref, kl)
        metrics: dict[str, Any] = {"kl": kl}
        shifted = logits[:, :-1, :]
        tokens = mask.sum()
        metrics["entropy"] = (token_entropy(shifted) * mask).sum() / mx.maximum(tokens, 1.0)
        mean_logits = shifted.mean(axis=-1) * mask
        rewards = cfg.beta * (logps - ref)
        n_chosen = sum(1 for e in batch if e.label)
        n_rejected = len(batch) - n_chosen
        for name, count, sel in (("chosen", n_chosen, flags), ("rejected", n_rejected, ~flags)):
            if not count:
                continue
            row_mask = mask * sel[:, None].astype(mx.float32)
            metrics[f"logits/{name}"] = (mean_logits * row_mask).sum() / row_mask.sum()
            metrics[f"rewards/{name}"] = mx.where(sel, rewards, 0.0).sum() / count
            metrics[f"logps/{name}"] = mx.where(sel, logps, 0.0).sum() / count
        if n_chosen and n_rejected:
            metrics["rewards/margins"] = metrics["rewards/chosen"] - metrics["rewards/rejected"]
        aux = {"metrics": metrics, "input_tokens": sum(min(len(e.prompt_ids) + len(e.completion_ids), cfg.max_length)
                                                       for e in batch)}
        return loss, grads, 1, aux

    def _step_metrics(self, stats: list[dict[str, Any]], norm: float) -> dict[str, float]:
        """Each metric: mean over the step's micro-batches that have it (TRL appends per micro-batch)."""
        names = sorted({k for s in stats for k in s["metrics"]})
        out: dict[str, float] = {}
        for name in names:
            values = [s["metrics"][name] for s in stats if name in s["metrics"]]
            total = distributed.all_sum(mx.stack([mx.stack(values).astype(mx.float32).sum(),
                                                  mx.array(float(len(values)))]))
            t, n = (float(v) for v in total.tolist())
            out[name] = t / max(n, 1.0)
        return out
