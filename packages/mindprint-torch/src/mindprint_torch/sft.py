"""Supervised fine-tuning through TRL's SFTTrainer, on the shared data layer's tokens and loss masks.

TRL receives a pre-tokenized dataset with ``input_ids`` and ``labels`` (-100 on tokens without
loss). With a ``labels`` column TRL uses the labels as given (a ``completion_mask`` column would be
ignored unless ``completion_only_loss=True``). Examples are truncated by the data layer *before*
TRL, so TRL's own truncation/dropping never changes what ``samples_trained`` reports.

With ``packing`` the rows are the kit's packed rows (:mod:`mindprint_kit.packing`, TRL's ``bfd`` bins) with
their ``seq_lengths``, and TRL runs its padding-free path: its collator restarts ``position_ids`` per example
and masks each example's first label; transformers' attention masks (sdpa, eager, flash) then see the packed
sequence in the position ids and keep attention inside each example.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from trl.trainer.sft_config import SFTConfig as TRLSFTConfig
from trl.trainer.sft_trainer import SFTTrainer

from mindprint_interfaces import SFTConfig
from mindprint_interfaces.data import TokenizedExample
from mindprint_interfaces.protocols import TrainerCallback
from mindprint_kit.data import Prepared, prepare_sft
from mindprint_kit.packing import PackedExample

from .callbacks import FiniteLossMixin, ProgressBridge
from .compact_head import CompactHeadMixin
from .model import PyTorchModel
from .sampler import PlannedOrder
from .training import PyTorchTrainerBase, common_args


class _SFTTrainer(FiniteLossMixin, CompactHeadMixin, PlannedOrder, SFTTrainer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.use_compact_heads()  # LM head on loss positions only (TRL does that on CUDA/XPU only)


def trl_sft_config(config: SFTConfig, model: PyTorchModel) -> Any:
    args = common_args(config, model)
    if config.packing:
        args["max_length"] = None  # the rows are packed to max_length already (TRL refuses it with padding_free)
    return TRLSFTConfig(
        **args,
        packing=False,  # the kit packs (the same rows as MLX); TRL's padding-free collator runs them
        padding_free=config.packing,
        shuffle_dataset=False,
        dataset_num_proc=None,
        completion_only_loss=None,  # irrelevant: our dataset carries explicit labels
        assistant_only_loss=False,
        loss_type="nll",
    )


class PyTorchSFTTrainer(PyTorchTrainerBase[SFTConfig]):
    """Trainer protocol: LoRA SFT with TRL. Loss on completion tokens only unless ``completion_only_loss=False``."""

    def __init__(self, model: PyTorchModel, config: SFTConfig | Mapping[str, Any],
                 callbacks: Sequence[TrainerCallback] = ()) -> None:
        super().__init__(model, SFTConfig.coerce(config), callbacks)

    def _prepare(self, data: Sequence[Mapping[str, Any]],
                 source: str) -> Prepared[TokenizedExample] | Prepared[PackedExample]:
        return prepare_sft(self._model.tokenizer, data, self.config, source)

    def _dataset(self, prepared: Prepared[TokenizedExample] | Prepared[PackedExample]) -> Any:
        from datasets import Dataset

        columns: dict[str, list[list[int]]] = {
            "input_ids": [list(e.input_ids) for e in prepared.examples],
            "labels": [list(e.labels) for e in prepared.examples],
        }
        if prepared.packed_from:
            columns["seq_lengths"] = [list(e.seq_lengths) for e in prepared.examples
                                      if isinstance(e, PackedExample)]
        return Dataset.from_dict(columns)

    def _build(self, dataset: Any, bridge: ProgressBridge) -> Any:
        return _SFTTrainer(
            model=self._model.hf_model,
            args=trl_sft_config(self.config, self._model),
            train_dataset=dataset,
            processing_class=self._model.hf_tokenizer,
            callbacks=[bridge],
        )


TorchSFTTrainer = PyTorchSFTTrainer  # 0.1 name, kept as an alias
