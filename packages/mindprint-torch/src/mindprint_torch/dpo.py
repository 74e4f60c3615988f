"""Direct preference optimisation through TRL's DPOTrainer, fed with the shared data layer's tokens.

TRL's ``DPOTrainer`` always re-tokenizes its dataset; our subclass skips that (through the hooks in
:mod:`._compat.trl`) and hands its collator ``prompt_ids`` / ``chosen_ids`` / ``rejected_ids`` from
``mindprint_interfaces.data``.

Reference (``DPOConfig.reference``):
- ``initial_policy`` (default): the policy as it is when DPO starts. The model always carries a LoRA
  adapter here (a fresh one is added when it has none), so TRL freezes a copy of it as adapter
  ``"ref"`` — after SFT that is the SFT model; with a fresh adapter (B = 0) it equals the base.
- ``base``: the model with adapters disabled (we drop TRL's ``"ref"`` copy before it is used).
- ``model``: an explicit ``ref_model`` (a PyTorchModel; its adapter is merged into a private copy).

``precompute_ref_log_probs`` (default on, as mindprint-mlx always does): the reference is fixed, so its
log-probs are computed once before the first step instead of one extra no-grad forward per step (TRL's
default). We keep them in memory rather than in TRL's ``datasets`` cache file: for an in-memory dataset
that file gets a random name per process, which breaks under DDP and litters the temp directory.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from trl.trainer.dpo_config import DPOConfig as TRLDPOConfig
from trl.trainer.dpo_trainer import DPOTrainer

from mindprint_interfaces import ConfigError, DPOConfig
from mindprint_interfaces.data import TokenizedPair
from mindprint_interfaces.phases import phase
from mindprint_interfaces.protocols import Model, TrainerCallback
from mindprint_kit.data import Prepared, prepare_preferences

from ._compat import trl as trl_compat
from .callbacks import FiniteLossMixin, ProgressBridge
from .compact_head import CompactHeadMixin
from .model import PyTorchModel, ensure_torch_model
from .sampler import PlannedOrder
from .training import PyTorchTrainerBase, common_args

REF_ADAPTER = "ref"


class _DPOTrainer(FiniteLossMixin, CompactHeadMixin, trl_compat.DPOTrainerHooks, PlannedOrder, DPOTrainer):
    """DPOTrainer on pre-tokenized data; optionally drops TRL's frozen adapter copy (reference = base)."""

    samples_per_row = 2
    pair_batches = True
    _mindprint_reference = "initial_policy"

    def __init__(self, *args: Any, mindprint_reference: str = "initial_policy", **kwargs: Any) -> None:
        self._mindprint_reference = mindprint_reference
        self._mindprint_policy = kwargs.get("model")
        trl_compat.require_dpo_dataset_hook()
        super().__init__(*args, **kwargs)
        self.use_compact_heads()  # LM head on completion positions only, each prompt once

    def pretokenized_dataset(self, dataset: Any) -> Any:
        # Called by DPOTrainer.__init__ after it created the "ref" adapter copy and before any reference
        # log-prob is computed (also before precompute_ref_log_probs runs).
        if self._mindprint_reference == "base":
            _drop_ref_adapter(self._mindprint_policy)
        return dataset

    def reference_logps_dataset(self, dataset: Any, batch_size: int) -> Any:
        import torch
        from torch.utils.data import DataLoader

        self.use_compact_heads()  # runs inside DPOTrainer.__init__, after TRL patched the heads
        loader = self.accelerator.prepare(DataLoader(dataset, batch_size=batch_size, collate_fn=self.data_collator,
                                                     shuffle=False, num_workers=0))
        model = self.ref_model or self.model
        chosen: list[Any] = []
        rejected: list[Any] = []
        with phase("reference pass", detail=f"{len(dataset)} pairs", total=len(dataset)) as ref_pass:
            for batch in loader:
                ref_chosen, ref_rejected = self.compute_ref_log_probs(model, batch)  # type: ignore[no-untyped-call]
                ref_chosen, ref_rejected = self.accelerator.gather_for_metrics((ref_chosen, ref_rejected))
                chosen.append(ref_chosen.float().cpu())
                rejected.append(ref_rejected.float().cpu())
                ref_pass.advance(len(ref_chosen))
        dataset = dataset.add_column("ref_chosen_logps", torch.cat(chosen).tolist())
        return dataset.add_column("ref_rejected_logps", torch.cat(rejected).tolist())


def _drop_ref_adapter(peft_model: Any) -> None:
    if peft_model is not None and REF_ADAPTER in getattr(peft_model, "peft_config", {}):
        peft_model.delete_adapter(REF_ADAPTER)
        peft_model.set_adapter("default")


def trl_dpo_config(config: DPOConfig, model: PyTorchModel) -> Any:
    return TRLDPOConfig(
        **common_args(config, model),
        beta=config.beta,
        loss_type=[config.loss_type],
        label_smoothing=config.label_smoothing,
        precompute_ref_log_probs=config.precompute_ref_log_probs,
        truncation_mode="keep_start",
        padding_free=False,
        use_weighting=False,
        sync_ref_model=False,
        # TRL zeroes every dropout by default; keep LoRA dropout when the user asked for it.
        disable_dropout=config.lora_dropout == 0.0,
    )


def _reference_module(ref: PyTorchModel) -> Any:
    """A frozen transformers model for an explicit reference (adapter merged into a private copy)."""
    module = copy.deepcopy(ref.hf_model)
    for sub in module.modules():
        sub.__dict__.pop("forward", None)  # drop TRL's fused-head patch bound to the original
    if ref.has_adapter():
        module = module.merge_and_unload()
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


class PyTorchDPOTrainer(PyTorchTrainerBase[DPOConfig]):
    """Trainer protocol: LoRA DPO with TRL's losses (sigmoid, ipo, hinge, robust) and metric names."""

    def __init__(self, model: PyTorchModel, config: DPOConfig | Mapping[str, Any], ref_model: Model | None = None,
                 callbacks: Sequence[TrainerCallback] = ()) -> None:
        cfg = DPOConfig.coerce(config)
        ref: PyTorchModel | None = None
        if ref_model is not None:
            ref = ensure_torch_model(ref_model)
            if ref is model:
                raise ConfigError("ref_model: must not be the policy model itself (leave it out: the default reference "
                                  "is the initial policy)", key="ref_model")
            if cfg.reference == "base":
                raise ConfigError('reference: "base" conflicts with an explicit ref_model; use reference="model"',
                                  key="reference")
            cfg = cfg.replace(reference="model")
        elif cfg.reference == "model":
            raise ConfigError('reference: "model" needs a ref_model passed to create_dpo_trainer', key="reference")
        super().__init__(model, cfg, callbacks)
        self.ref_model = ref
        self._ref_module: Any = None

    def _prepare(self, data: Sequence[Mapping[str, Any]], source: str) -> Prepared[TokenizedPair]:
        return prepare_preferences(self._model.tokenizer, data, self.config, source)

    def _reference_record(self) -> dict[str, Any] | None:
        if self.ref_model is None:
            return None
        from mindprint_kit.checkpoints import reference_model_record

        from .adapters import live_weights

        ref = self.ref_model
        return reference_model_record(ref.name_or_path, live_weights(ref) if ref.has_adapter() else None)

    def _dataset(self, prepared: Prepared[TokenizedPair]) -> Any:
        from datasets import Dataset

        return Dataset.from_dict({
            "prompt_ids": [list(p.prompt_ids) for p in prepared.examples],
            "chosen_ids": [list(p.chosen_ids) for p in prepared.examples],
            "rejected_ids": [list(p.rejected_ids) for p in prepared.examples],
        })

    def _build(self, dataset: Any, bridge: ProgressBridge) -> Any:
        if self.ref_model is not None and self._ref_module is None:
            self._ref_module = _reference_module(self.ref_model)
        return _DPOTrainer(
            model=self._model.hf_model,
            ref_model=self._ref_module,
            args=trl_dpo_config(self.config, self._model),
            train_dataset=dataset,
            processing_class=self._model.hf_tokenizer,
            callbacks=[bridge],
            mindprint_reference=self.config.reference,
        )

    def _cleanup(self) -> None:
        _drop_ref_adapter(self._model.hf_model if self._model.has_adapter() else None)


TorchDPOTrainer = PyTorchDPOTrainer  # 0.1 name, kept as an alias
