"""MLXDPOTrainer: hand-written DPO with TRL 1.16's losses and metric definitions.

* logps = sum of completion-token log-probs. Per pair, the prompt runs once and the chosen and rejected
  completions continue from its cached keys/values, with the LM head only on completion positions
  (:mod:`.lean_forward`); models without mlx-lm's body/head layout fall back to one padded batched
  forward of ``[chosen..., rejected...]``. Both give the same numbers.
* Reference log-probs are computed once before the first step and stored (no second model):
  ``initial_policy`` = the model as it is now (after SFT: with the SFT adapter), ``base`` = adapters
  off (LoRA scale 0), ``model`` = an explicit ``ref_model``.
* Losses: sigmoid, hinge, ipo (per-token normalised), robust (label smoothing) — see losses.py.
* Metrics per optimizer step, over the examples of the whole accumulated batch: rewards/chosen,
  rewards/rejected, rewards/accuracies (strict >), rewards/margins, logps/chosen, logps/rejected,
  logits/chosen, logits/rejected (mean over vocab and completion tokens), plus loss, learning_rate,
  grad_norm, epoch, num_tokens.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import Any

import mlx.core as mx
import mlx.nn as nn

from mindprint_interfaces import ConfigError, DPOConfig
from mindprint_interfaces.data import IGNORE_INDEX, TokenizedPair
from mindprint_interfaces.phases import phase
from mindprint_interfaces.protocols import TrainerCallback
from mindprint_kit.data import Prepared, prepare_preferences

from . import distributed, lean_forward, lora
from .losses import dpo_per_example_loss, token_logprobs
from .model import MLXModel, right_pad
from .training import MLXTrainerBase

REF_CHUNK = 8


def pair_batch(pairs: Sequence[TokenizedPair], pad_id: int) -> tuple[Any, Any]:
    """[chosen..., rejected...] rows: ids and labels (-100 on prompt and padding)."""
    rows = [p.prompt_ids + p.chosen_ids for p in pairs] + [p.prompt_ids + p.rejected_ids for p in pairs]
    labels = ([[IGNORE_INDEX] * len(p.prompt_ids) + list(p.chosen_ids) for p in pairs]
              + [[IGNORE_INDEX] * len(p.prompt_ids) + list(p.rejected_ids) for p in pairs])
    return mx.array(right_pad(rows, pad_id)), mx.array(right_pad(labels, IGNORE_INDEX))


class MLXDPOTrainer(MLXTrainerBase[DPOConfig]):
    def __init__(self, model: MLXModel, config: DPOConfig, ref_model: MLXModel | None = None,
                 callbacks: Sequence[TrainerCallback] = ()) -> None:
        super().__init__(model, config, callbacks)
        if config.reference == "model" and ref_model is None:
            raise ConfigError('reference="model" needs a ref_model passed to the trainer', key="reference")
        if ref_model is not None and config.reference == "base":
            raise ConfigError('reference="base" uses the model with adapters off; do not pass a ref_model '
                              '(or set reference="model")', key="reference")
        self.ref_model = ref_model
        self.reference = "model" if ref_model is not None else config.reference
        self._ref_chosen: Any = None
        self._ref_rejected: Any = None
        cfg = config

        def loss_fn(batch: list[TokenizedPair], ref_chosen: Any, ref_rejected: Any, n_chosen: Any,
                    n_rejected: Any) -> tuple[Any, Any, Any, Any]:
            chosen, rejected, logit_sums = self._policy_logps(batch)
            losses = dpo_per_example_loss(cfg.loss_type, cfg.beta, cfg.label_smoothing, chosen, rejected,
                                          ref_chosen, ref_rejected, n_chosen, n_rejected)
            return losses.sum(), mx.stop_gradient(chosen), mx.stop_gradient(rejected), logit_sums

        self._grad_fn = nn.value_and_grad(model.module, loss_fn)

    def _policy_logps(self, batch: list[TokenizedPair]) -> tuple[Any, Any, Any]:
        """(chosen (B,), rejected (B,), [chosen, rejected] vocab-mean logit sums over completion tokens)."""
        # The shared-prompt forward fills a KV cache inside the layers: a checkpointed layer recomputed in the
        # backward pass would fill it twice, so with gradient checkpointing the padded forward runs (same numbers).
        if self.lean_forward and not self.config.gradient_checkpointing:
            return lean_forward.batch_logps(self._model.module, batch)
        ids, labels = pair_batch(batch, self._model.pad_id)
        logits = self._model.logits(ids)
        per_token, mask = token_logprobs(logits, labels)
        logps = per_token.sum(axis=1)
        b = len(batch)
        mean_logits = mx.stop_gradient(logits[:, :-1, :]).mean(axis=-1) * mask
        return logps[:b], logps[b:], mx.stack([mean_logits[:b].sum(), mean_logits[b:].sum()])

    def _prepare(self, data: Sequence[Mapping[str, Any]], source: str) -> Prepared[TokenizedPair]:
        return prepare_preferences(self._model.tokenizer, data, self.config, source)

    # -- reference -------------------------------------------------------------------------------------------------
    def _reference_kind(self) -> str | None:
        return self.reference

    def _reference_record(self) -> dict[str, Any] | None:
        if self.reference != "model" or self.ref_model is None:
            return None
        from mindprint_kit.checkpoints import reference_model_record

        from .adapters import live_weights

        ref = self.ref_model
        return reference_model_record(ref.model_path, live_weights(ref.module) if ref.has_adapter() else None)

    def reference_logps(self, pairs: Sequence[TokenizedPair]) -> tuple[Any, Any]:
        """(ref_chosen, ref_rejected) for every pair, per ``self.reference``, without gradients."""
        source = self.ref_model if self.reference == "model" and self.ref_model is not None else self._model
        lean = self.lean_forward if source is self._model else lean_forward.supports_lean_forward(source.module)
        chosen: list[Any] = []
        rejected: list[Any] = []
        was_training = self._model.module.training
        self._model.module.eval()
        try:
            with (lora.adapters_disabled(self._model.module) if self.reference == "base" else contextlib.nullcontext(),
                  phase("reference pass", detail=f"{len(pairs)} pairs", total=len(pairs)) as ref_pass):
                for start in range(0, len(pairs), REF_CHUNK):
                    chunk = pairs[start:start + REF_CHUNK]
                    if lean:
                        c, r, _ = lean_forward.batch_logps(source.module, chunk)
                    else:
                        logps = source.completion_logprobs([p.prompt_ids for p in chunk] * 2,
                                                           [p.chosen_ids for p in chunk] + [p.rejected_ids for p in chunk])
                        c, r = logps[:len(chunk)], logps[len(chunk):]
                    c, r = mx.stop_gradient(c), mx.stop_gradient(r)
                    mx.eval(c, r)
                    chosen.append(c)
                    rejected.append(r)
                    ref_pass.advance(len(chunk))
        finally:
            self._model.module.train(was_training)
        return mx.concatenate(chosen), mx.concatenate(rejected)

    def _start(self, examples: list[Any]) -> None:
        self._ref_chosen, self._ref_rejected = self.reference_logps(examples)

    def _cleanup(self) -> None:
        self._ref_chosen = self._ref_rejected = None

    # -- steps -----------------------------------------------------------------------------------------------------
    def _micro_step(self, examples: list[Any], indices: Sequence[int]) -> tuple[Any, Any, Any, dict[str, Any]]:
        batch: list[TokenizedPair] = [examples[i] for i in indices]
        idx = mx.array(list(indices))
        ref_c, ref_r = self._ref_chosen[idx], self._ref_rejected[idx]
        n_c = mx.array([float(len(p.chosen_ids)) for p in batch])
        n_r = mx.array([float(len(p.rejected_ids)) for p in batch])
        (loss_sum, chosen, rejected, logit_sums), grads = self._grad_fn(batch, ref_c, ref_r, n_c, n_r)
        aux = {"chosen": chosen, "rejected": rejected, "ref_chosen": ref_c, "ref_rejected": ref_r,
               "logit_sums": logit_sums, "chosen_tokens": float(n_c.sum()), "rejected_tokens": float(n_r.sum()),
               "input_tokens": sum(2 * len(p.prompt_ids) + len(p.chosen_ids) + len(p.rejected_ids) for p in batch)}
        return loss_sum, grads, len(batch), aux

    def _step_metrics(self, stats: list[dict[str, Any]], norm: float) -> dict[str, float]:
        """Means over the pairs of the whole step — all micro-batches of all ranks (sums are all_sum'ed)."""
        beta = self.config.beta
        sums = mx.zeros(11)
        for s in stats:
            chosen_rewards = beta * (s["chosen"] - s["ref_chosen"])
            rejected_rewards = beta * (s["rejected"] - s["ref_rejected"])
            sums = sums + mx.stack([
                chosen_rewards.sum(), rejected_rewards.sum(),
                (chosen_rewards > rejected_rewards).astype(mx.float32).sum(),
                (chosen_rewards - rejected_rewards).sum(), s["chosen"].sum(), s["rejected"].sum(),
                s["logit_sums"][0], s["logit_sums"][1], mx.array(s["chosen_tokens"]), mx.array(s["rejected_tokens"]),
                mx.array(float(s["chosen"].shape[0])),
            ]).astype(mx.float32)
        sums = distributed.all_sum(sums)
        values = [float(v) for v in sums.tolist()]
        n = max(values[10], 1.0)
        c_tok, r_tok = values[8], values[9]
        return {
            "rewards/chosen": values[0] / n,
            "rewards/rejected": values[1] / n,
            "rewards/accuracies": values[2] / n,
            "rewards/margins": values[3] / n,
            "logps/chosen": values[4] / n,
            "logps/rejected": values[5] / n,
            "logits/chosen": values[6] / c_tok if c_tok else 0.0,
            "logits/rejected": values[7] / r_tok if r_tok else 0.0,
        }
