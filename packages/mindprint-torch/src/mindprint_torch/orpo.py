"""ORPO through TRL's ``ORPOTrainer`` (``trl.experimental.orpo`` in TRL 1.16), fed with the shared data layer's tokens.

TRL's ORPO trainer tokenizes each row itself (``tokenize_row``); our subclass returns the data layer's
``prompt_ids`` / ``chosen_ids`` / ``rejected_ids`` in TRL's column layout instead (through
:class:`._compat.trl.RowTokenizerHooks`), so both backends train on the same tokens. The loss, the
metrics (``rewards/*``, ``logps/*``, ``logits/*``, ``nll_loss``, ``log_odds_ratio``, ``log_odds_chosen``)
and their averaging are TRL's.

The compact LM head does not apply: TRL's ORPO takes the NLL over the *whole* chosen sequence (prompt
included) and logs ``logits/chosen`` / ``logits/rejected`` as the mean over every position of the padded
logits, so the full logits are needed; and TRL does not patch its fused head into this trainer.

The CPO trainer (:mod:`.cpo`) shares this module's row layout and argument mapping.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any, TypeVar

from mindprint_interfaces import ORPOConfig
from mindprint_interfaces.configs import TrainConfigBase
from mindprint_interfaces.data import IGNORE_INDEX, TokenizedPair
from mindprint_interfaces.protocols import TrainerCallback
from mindprint_kit.data import Prepared, prepare_preferences

from ._compat import trl as trl_compat
from .callbacks import FiniteLossMixin, ProgressBridge
from .model import PyTorchModel
from .sampler import PlannedOrder
from .training import PyTorchTrainerBase, common_args

C = TypeVar("C", bound=TrainConfigBase)


def trl_row(feature: Mapping[str, Any]) -> dict[str, Any]:
    """TRL's ORPO/CPO ``tokenize_row`` output (decoder-only) from pre-tokenized ids: labels -100 on the prompt."""
    prompt = list(feature["prompt_ids"])
    row: dict[str, Any] = {"prompt_input_ids": prompt, "prompt_attention_mask": [1] * len(prompt)}
    for side in ("chosen", "rejected"):
        completion = list(feature[f"{side}_ids"])
        row[f"{side}_input_ids"] = prompt + completion
        row[f"{side}_attention_mask"] = [1] * (len(prompt) + len(completion))
        row[f"{side}_labels"] = [IGNORE_INDEX] * len(prompt) + completion
    return row


def pair_dataset(prepared: Prepared[TokenizedPair]) -> Any:
    from datasets import Dataset

    return Dataset.from_dict({
        "prompt_ids": [list(p.prompt_ids) for p in prepared.examples],
        "chosen_ids": [list(p.chosen_ids) for p in prepared.examples],
        "rejected_ids": [list(p.rejected_ids) for p in prepared.examples],
    })


def ref_free_args(config: TrainConfigBase, model: PyTorchModel) -> dict[str, Any]:
    """TrainingArguments + the settings ORPO and CPO share (TRL zeroes dropout unless LoRA dropout was asked for)."""
    return {**common_args(config, model), "beta": getattr(config, "beta"),
            "disable_dropout": config.lora_dropout == 0.0, "remove_unused_columns": False}


@cache
def trainer_class(method: str) -> Any:
    """Our subclass of TRL's experimental ORPO/CPO trainer (built on first use: importing TRL's is a reach-in)."""
    base, _ = trl_compat.experimental_trainer(method)

    class _RefFreeTrainer(FiniteLossMixin, trl_compat.RowTokenizerHooks, PlannedOrder, base):  # type: ignore[misc, valid-type]
        rows_key = "chosen_input_ids"

        def pretokenized_row(self, feature: Any) -> dict[str, Any]:
            return trl_row(feature)

    _RefFreeTrainer.__name__ = _RefFreeTrainer.__qualname__ = f"_{method.upper()}Trainer"
    return _RefFreeTrainer


class RefFreeTrainerBase(PyTorchTrainerBase[C]):
    """ORPO and CPO: pairs from the data layer, TRL's experimental trainer as the step loop."""

    method = ""

    def _prepare(self, data: Sequence[Mapping[str, Any]], source: str) -> Prepared[TokenizedPair]:
        return prepare_preferences(self._model.tokenizer, data, self.config, source)

    def _dataset(self, prepared: Prepared[TokenizedPair]) -> Any:
        return pair_dataset(prepared)

    def _trl_args(self) -> Any:
        raise NotImplementedError

    def _build(self, dataset: Any, bridge: ProgressBridge) -> Any:
        return trainer_class(self.method)(
            model=self._model.hf_model,
            args=self._trl_args(),
            train_dataset=dataset,
            processing_class=self._model.hf_tokenizer,
            callbacks=[bridge],
        )


class PyTorchORPOTrainer(RefFreeTrainerBase[ORPOConfig]):
    """Trainer protocol: LoRA ORPO with TRL's loss and metric names; no reference model."""

    method = "orpo"

    def __init__(self, model: PyTorchModel, config: ORPOConfig | Mapping[str, Any],
                 callbacks: Sequence[TrainerCallback] = ()) -> None:
        super().__init__(model, ORPOConfig.coerce(config), callbacks)

    def _trl_args(self) -> Any:
        _, config_class = trl_compat.experimental_trainer(self.method)
        return config_class(**ref_free_args(self.config, self._model))
