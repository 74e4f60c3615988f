"""PipelineConfig: the curriculum pipeline's settings (a stdlib dataclass, buildable from a dict).

Field names follow the seed's ``PipelineConfig`` (``sft_epochs_per_topic``, ``dpo_beta``,
``accuracy_threshold`` ...). ``sft`` / ``dpo`` hold extra :class:`~mindprint_interfaces.SFTConfig` /
:class:`~mindprint_interfaces.DPOConfig` keys that override what the flat fields derive.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from mindprint_interfaces import ConfigError, DPOConfig, GenerationConfig, SFTConfig
from mindprint_interfaces._validation import check
from mindprint_interfaces.configs import Device, DType, LossType, _FromDict

T = TypeVar("T", SFTConfig, DPOConfig)

# Keys that do not change what is trained: a resumed run may change them freely.
NON_TRAINING_KEYS: frozenset[str] = frozenset(
    {"backend_type", "device", "dtype", "data_dir", "output_dir", "checkpoint_dir", "model_path"}
)


@dataclass(frozen=True)
class PipelineConfig(_FromDict):
    """Settings of :class:`~mindprint_pipeline.DPOPipeline`.

    ``backend_type=None`` means "use the backend passed to the pipeline" or, with a transformers
    model and tokenizer passed in, legacy mode through the PyTorch backend's wrapper.
    """

    # backend + model
    backend_type: str | None = None
    device: Device = "auto"
    dtype: DType = "auto"
    model_path: str | None = None
    # SFT per topic
    sft_epochs_per_topic: float = 3.0
    sft_learning_rate: float = 2e-4
    sft_batch_size: int = 4
    sft_max_length: int = 512
    # DPO per topic
    dpo_steps_per_topic: int = 10
    dpo_learning_rate: float = 5e-6
    dpo_batch_size: int = 2
    dpo_beta: float = 0.1
    dpo_loss_type: LossType = "sigmoid"
    # LoRA (shared by SFT and DPO: DPO continues the SFT adapter)
    lora_r: int = 8
    lora_alpha: float = 16.0
    # decisions
    accuracy_threshold: float = 0.70
    dpo_trigger_threshold: float = 0.75
    topic_pass_threshold: float = 0.90
    merge_after_unit: bool = True
    max_retries_per_topic: int = 2
    # evaluation
    markers_file: str | None = None
    eval_max_new_tokens: int = 64
    eval_max_records: int | None = None  # per topic; None = every record
    # paths
    data_dir: str = "data"
    output_dir: str = "outputs"
    checkpoint_dir: str | None = None  # None = <output_dir>/checkpoints
    seed: int = 42
    # extra SFTConfig / DPOConfig keys (override the flat fields above)
    sft: dict[str, Any] = field(default_factory=dict)
    dpo: dict[str, Any] = field(default_factory=dict)

    _aliases: ClassVar[Mapping[str, str]] = {
        "backend": "backend_type",
        "sft_epochs": "sft_epochs_per_topic",
        "dpo_steps": "dpo_steps_per_topic",
        "max_retries": "max_retries_per_topic",
    }

    def __post_init__(self) -> None:
        for key in ("accuracy_threshold", "dpo_trigger_threshold", "topic_pass_threshold"):
            value = getattr(self, key)
            check(math.isfinite(value) and 0.0 <= value <= 1.0, key, f"must be in [0, 1], got {value}")
        check(self.sft_epochs_per_topic > 0, "sft_epochs_per_topic", f"must be > 0, got {self.sft_epochs_per_topic}")
        check(self.dpo_steps_per_topic > 0, "dpo_steps_per_topic", f"must be > 0, got {self.dpo_steps_per_topic}")
        check(self.max_retries_per_topic >= 0, "max_retries_per_topic",
              f"must be >= 0, got {self.max_retries_per_topic}")
        check(self.eval_max_new_tokens > 0, "eval_max_new_tokens", f"must be > 0, got {self.eval_max_new_tokens}")
        check(self.eval_max_records is None or self.eval_max_records > 0, "eval_max_records",
              f"must be > 0 or null, got {self.eval_max_records}")
        check(bool(self.output_dir), "output_dir", "must not be empty")
        # Validate the derived trainer configs now, so a bad value fails before any work starts.
        SFTConfig.from_dict(self.sft, prefix="sft.")
        DPOConfig.from_dict(self.dpo, prefix="dpo.")
        self.sft_config(seed=self.seed)
        self.dpo_config(seed=self.seed)

    # -- derived paths -------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return Path(self.checkpoint_dir) if self.checkpoint_dir else Path(self.output_dir) / "checkpoints"

    # -- derived trainer configs ---------------------------------------------------------------
    def sft_config(self, *, seed: int, output_dir: str | Path | None = None) -> SFTConfig:
        """The SFTConfig for one topic attempt (flat fields, then ``sft`` overrides, then the seed)."""
        base: dict[str, Any] = {
            "learning_rate": self.sft_learning_rate,
            "num_epochs": self.sft_epochs_per_topic,
            "per_device_batch_size": self.sft_batch_size,
            "max_length": self.sft_max_length,
            "lora_r": self.lora_r,
            "lora_alpha": self.lora_alpha,
            "output_dir": str(output_dir) if output_dir is not None else str(Path(self.output_dir) / "runs"),
        }
        return _derived(SFTConfig, {**base, **self.sft, "seed": seed}, "sft")

    def dpo_config(self, *, seed: int, output_dir: str | Path | None = None) -> DPOConfig:
        base: dict[str, Any] = {
            "learning_rate": self.dpo_learning_rate,
            "max_steps": self.dpo_steps_per_topic,
            "per_device_batch_size": self.dpo_batch_size,
            "max_length": self.sft_max_length,
            "beta": self.dpo_beta,
            "loss_type": self.dpo_loss_type,
            "lora_r": self.lora_r,
            "lora_alpha": self.lora_alpha,
            "output_dir": str(output_dir) if output_dir is not None else str(Path(self.output_dir) / "runs"),
        }
        return _derived(DPOConfig, {**base, **self.dpo, "seed": seed}, "dpo")

    def generation_config(self, *, seed: int | None = None) -> GenerationConfig:
        """Greedy decoding for evaluation (reproducible answers on both backends)."""
        return GenerationConfig(max_new_tokens=self.eval_max_new_tokens, temperature=0.0, seed=seed)

    def training_fingerprint(self) -> dict[str, Any]:
        """The settings that change what is trained; a resume refuses a checkpoint made with others."""
        return {k: v for k, v in self.to_dict().items() if k not in NON_TRAINING_KEYS}


def _derived(cls: type[T], data: Mapping[str, Any], section: str) -> T:
    try:
        return cls.from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{section} (derived from the pipeline settings): {exc}", key=f"{section}.{exc.key}") from None
