"""MLXSFTTrainer: hand-written supervised fine-tuning with TRL's loss normalisation.

The loss of an optimizer step is the sum of token cross-entropies over every micro-batch of the
step divided by the number of loss tokens in the whole accumulated batch (TRL/HF with
``num_items_in_batch``), so accumulation steps weigh tokens, not micro-batches.

Each example runs unpadded with the LM head only on loss positions (:mod:`.lean_forward`) when the
model's layout allows it; otherwise one padded batched forward. Both give the same numbers. With
``packing`` each packed row runs as sub-rows of whole examples, each with its examples' block-diagonal mask
(:mod:`.packed`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import mlx.core as mx
import mlx.nn as nn

from mindprint_interfaces import SFTConfig
from mindprint_interfaces.data import IGNORE_INDEX, TokenizedExample
from mindprint_interfaces.protocols import TrainerCallback
from mindprint_kit.data import Prepared, prepare_sft
from mindprint_kit.packing import PackedExample

from . import lean_forward, packed
from .losses import ce_sum_and_count
from .model import MLXModel, right_pad
from .training import MLXTrainerBase


class MLXSFTTrainer(MLXTrainerBase[SFTConfig]):
    """SFT on the shared data layer's ids and labels (completion-only loss by default)."""

    def __init__(self, model: MLXModel, config: SFTConfig, callbacks: Sequence[TrainerCallback] = ()) -> None:
        super().__init__(model, config, callbacks)

        def loss_fn(batch: list[Any]) -> tuple[Any, Any]:
            if batch and isinstance(batch[0], PackedExample):
                total, count = packed.batch_packed_ce(self._model.module, batch)
                return total, mx.array(float(count))
            if self.lean_forward:
                total, count = lean_forward.batch_ce(self._model.module, [(e.input_ids, e.labels) for e in batch])
                return total, mx.array(float(count))
            ids = mx.array(right_pad([e.input_ids for e in batch], self._model.pad_id))
            labels = mx.array(right_pad([e.labels for e in batch], IGNORE_INDEX))
            return ce_sum_and_count(self._model.logits(ids), labels)

        self._grad_fn = nn.value_and_grad(model.module, loss_fn)

    def _prepare(self, data: Sequence[Mapping[str, Any]],
                 source: str) -> Prepared[TokenizedExample] | Prepared[PackedExample]:
        if self.config.packing:
            packed.check_packing(self._model.module)
        return prepare_sft(self._model.tokenizer, data, self.config, source)

    def _micro_step(self, examples: list[Any], indices: Sequence[int]) -> tuple[Any, Any, Any, dict[str, Any]]:
        batch: list[TokenizedExample | PackedExample] = [examples[i] for i in indices]
        (loss_sum, count), grads = self._grad_fn(batch)
        return loss_sum, grads, count, {"input_tokens": sum(len(e.input_ids) for e in batch)}
