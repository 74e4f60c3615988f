"""KTO through TRL's ``KTOTrainer``, fed with the shared data layer's unpaired records.

TRL's ``KTOTrainer`` re-tokenizes, unpairs and builds its KL completions in ``_prepare_dataset``; our
subclass (through :class:`._compat.trl.KTOTrainerHooks`) hands it the data layer's ``prompt_ids`` /
``completion_ids`` / ``label`` and the KL completions built exactly as TRL builds them
(:func:`kl_completions`: within each block of ``per_device_batch_size`` consecutive records the
completions rotate by one). TRL requires sequential sampling for that pairing, so batches run in data
order. The compact LM head applies (TRL's fused head scores completion positions only).

Reference: ``initial_policy`` — TRL freezes a copy of the adapter as ``"ref"``; ``base`` — that copy is
dropped, so TRL's reference forward runs with adapters disabled. The reference forward runs every step
(TRL's precompute would write a ``datasets`` cache file named per process); the numbers are the same.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from trl.trainer.kto_config import KTOConfig as TRLKTOConfig
from trl.trainer.kto_trainer import KTOTrainer

from mindprint_interfaces import KTOConfig
from mindprint_interfaces.data import TokenizedUnpaired
from mindprint_interfaces.protocols import Model, TrainerCallback
from mindprint_kit.data import Prepared, prepare_unpaired

from ._compat import trl as trl_compat
from .callbacks import FiniteLossMixin, ProgressBridge
from .compact_head import CompactHeadMixin
from .dpo import _drop_ref_adapter
from .model import PyTorchModel
from .sampler import PlannedOrder
from .training import PyTorchTrainerBase, common_args


def kl_completions(completions: Sequence[Sequence[int]], block: int) -> list[list[int]]:
    """TRL's mismatched completions: per block of ``block`` records, (y_1..y_n) -> (y_n, y_1, ..., y_{n-1})."""
    out: list[list[int]] = []
    for start in range(0, len(completions), block):
        chunk = [list(c) for c in completions[start:start + block]]
        out += [chunk[-1], *chunk[:-1]]
    return out


class _KTOTrainer(FiniteLossMixin, CompactHeadMixin, trl_compat.KTOTrainerHooks, PlannedOrder, KTOTrainer):
    _mindprint_reference = "initial_policy"

    def __init__(self, *args: Any, mindprint_reference: str = "initial_policy", **kwargs: Any) -> None:
        self._mindprint_reference = mindprint_reference
        self._mindprint_policy = kwargs.get("model")
        trl_compat.require_kto_dataset_hook()
        super().__init__(*args, **kwargs)
        self.use_compact_heads()

    def pretokenized_dataset(self, dataset: Any) -> Any:
        if self._mindprint_reference == "base":
            _drop_ref_adapter(self._mindprint_policy)
        return dataset


def trl_kto_config(config: KTOConfig, model: PyTorchModel) -> Any:
    return TRLKTOConfig(
        **common_args(config, model),
        beta=config.beta,
        loss_type=config.loss_type,
        desirable_weight=config.desirable_weight,
        undesirable_weight=config.undesirable_weight,
        precompute_ref_log_probs=False,
        sync_ref_model=False,
        train_sampling_strategy="sequential",  # TRL: the KL completions pair records of fixed-order batches
        disable_dropout=config.lora_dropout == 0.0,
    )


class PyTorchKTOTrainer(PyTorchTrainerBase[KTOConfig]):
    """Trainer protocol: LoRA KTO with TRL's losses and metric names (``kl``, ``rewards/*``, ``logps/*``, ...)."""

    def __init__(self, model: PyTorchModel, config: KTOConfig | Mapping[str, Any], ref_model: Model | None = None,
                 callbacks: Sequence[TrainerCallback] = ()) -> None:
        from mindprint_interfaces import ConfigError

        if ref_model is not None:
            raise ConfigError("ref_model: KTO's reference is the initial policy or the base model "
                              "(set reference); an explicit reference model is not supported", key="ref_model")
        super().__init__(model, KTOConfig.coerce(config), callbacks)

    def _prepare(self, data: Sequence[Mapping[str, Any]], source: str) -> Prepared[TokenizedUnpaired]:
        return prepare_unpaired(self._model.tokenizer, data, self.config, source)

    def _dataset(self, prepared: Prepared[TokenizedUnpaired]) -> Any:
        from datasets import Dataset

        completions = [list(e.completion_ids) for e in prepared.examples]
        columns: dict[str, Any] = {
            "prompt_ids": [list(e.prompt_ids) for e in prepared.examples],
            "completion_ids": completions,
            "label": [e.label for e in prepared.examples],
        }
        if self.config.loss_type == "kto":
            columns["KL_completion_ids"] = kl_completions(completions, self.config.per_device_batch_size)
        return Dataset.from_dict(columns)

    def _build(self, dataset: Any, bridge: ProgressBridge) -> Any:
        return _KTOTrainer(
            model=self._model.hf_model,
            args=trl_kto_config(self.config, self._model),
            train_dataset=dataset,
            processing_class=self._model.hf_tokenizer,
            callbacks=[bridge],
            mindprint_reference=self.config.reference,
        )

    def _cleanup(self) -> None:
        _drop_ref_adapter(self._model.hf_model if self._model.has_adapter() else None)
