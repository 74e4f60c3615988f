"""Configuration dataclasses (stdlib only, so this package stays dependency-free).

Each config can be built from a plain dict with :meth:`from_dict`: unknown keys raise with
the closest valid key suggested, values are type-checked and range-checked, and every error
names the key. Defaults follow the HF Trainer / TRL defaults unless noted, so a user moving
from TRL gets the same behaviour.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, TypeVar

from ._validation import build, check

DEFAULT_TARGET_MODULES: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")

Device = Literal["auto", "cpu", "cuda", "mps", "gpu", "metal"]
DType = Literal["auto", "float32", "float16", "bfloat16"]
LRScheduler = Literal["linear", "cosine", "constant", "constant_with_warmup"]
LossType = Literal["sigmoid", "ipo", "hinge", "robust"]
Reference = Literal["initial_policy", "base", "model"]
Truncation = Literal["truncate", "drop", "error"]

C = TypeVar("C", bound="_FromDict")


class _FromDict:
    """Mixin: ``from_dict`` / ``coerce`` / ``to_dict`` for the config dataclasses."""

    _aliases: ClassVar[Mapping[str, str]] = {}

    @classmethod
    def from_dict(cls: type[C], data: Mapping[str, Any], *, prefix: str = "") -> C:
        return build(cls, data, prefix=prefix, aliases=cls._aliases)

    @classmethod
    def coerce(cls: type[C], value: C | Mapping[str, Any] | None) -> C:
        """Accept an instance, a mapping (the seed's style) or None (defaults)."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if isinstance(value, Mapping):
            return cls.from_dict(value)
        raise TypeError(f"expected {cls.__name__} or a mapping, got {type(value).__name__}")

    def to_dict(self) -> dict[str, Any]:
        assert dataclasses.is_dataclass(self)
        return dataclasses.asdict(self)

    def replace(self: C, **changes: Any) -> C:
        assert dataclasses.is_dataclass(self)
        merged = {**dataclasses.asdict(self), **changes}
        return type(self).from_dict(merged)


@dataclass(frozen=True)
class BackendConfig(_FromDict):
    """Which backend, on which device, in which precision. ``backend_type=None`` means "not chosen yet"."""

    backend_type: str | None = None
    device: Device = "auto"
    dtype: DType = "auto"
    seed: int = 42
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AdapterConfig(_FromDict):
    """LoRA hyper-parameters; identical meaning on both backends (PEFT semantics: scale = alpha / r)."""

    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    target_modules: tuple[str, ...] = DEFAULT_TARGET_MODULES
    layers: tuple[int, ...] | None = None  # explicit layer indices; None = every layer

    def __post_init__(self) -> None:
        check(self.r > 0, "r", f"must be > 0, got {self.r}")
        check(self.alpha > 0, "alpha", f"must be > 0, got {self.alpha}")
        check(0.0 <= self.dropout < 1.0, "dropout", f"must be in [0, 1), got {self.dropout}")
        check(len(self.target_modules) > 0, "target_modules", "must name at least one module")
        if self.layers is not None:
            check(all(i >= 0 for i in self.layers), "layers", f"layer indices must be >= 0, got {self.layers}")

    @property
    def scale(self) -> float:
        return self.alpha / self.r


@dataclass(frozen=True)
class _TrainConfigBase(_FromDict):
    learning_rate: float = 2e-4
    num_epochs: float = 1.0
    max_steps: int = -1  # > 0 overrides num_epochs (HF semantics)
    per_device_batch_size: int = 4
    gradient_accumulation_steps: int = 1
    max_length: int = 1024
    truncation: Truncation = "truncate"  # over-long examples: cut, drop (reported) or raise
    warmup_ratio: float = 0.0
    warmup_steps: int = 0
    lr_scheduler: LRScheduler = "linear"
    seed: int = 42
    lora_r: int = 8
    lora_alpha: float = 16.0
    lora_dropout: float = 0.0
    target_modules: tuple[str, ...] = DEFAULT_TARGET_MODULES
    lora_layers: tuple[int, ...] | None = None
    output_dir: str = "outputs"
    logging_steps: int = 1
    save_steps: int = 0  # 0 = save only at the end
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8

    _aliases: ClassVar[Mapping[str, str]] = {
        "lr": "learning_rate",
        "epochs": "num_epochs",
        "batch_size": "per_device_batch_size",
        "lora_rank": "lora_r",
    }

    def __post_init__(self) -> None:
        check(math.isfinite(self.learning_rate) and self.learning_rate > 0, "learning_rate",
              f"must be > 0, got {self.learning_rate}")
        check(self.num_epochs > 0 or self.max_steps > 0, "num_epochs", "must be > 0 (or set max_steps > 0)")
        check(self.max_steps == -1 or self.max_steps > 0, "max_steps", f"must be -1 (use num_epochs) or > 0, got {self.max_steps}")
        check(self.per_device_batch_size > 0, "per_device_batch_size", f"must be > 0, got {self.per_device_batch_size}")
        check(self.gradient_accumulation_steps > 0, "gradient_accumulation_steps",
              f"must be > 0, got {self.gradient_accumulation_steps}")
        check(self.max_length > 1, "max_length", f"must be > 1, got {self.max_length}")
        check(0.0 <= self.warmup_ratio < 1.0, "warmup_ratio", f"must be in [0, 1), got {self.warmup_ratio}")
        check(self.warmup_steps >= 0, "warmup_steps", f"must be >= 0, got {self.warmup_steps}")
        check(self.lora_r > 0, "lora_r", f"must be > 0, got {self.lora_r}")
        check(self.lora_alpha > 0, "lora_alpha", f"must be > 0, got {self.lora_alpha}")
        check(0.0 <= self.lora_dropout < 1.0, "lora_dropout", f"must be in [0, 1), got {self.lora_dropout}")
        check(len(self.target_modules) > 0, "target_modules", "must name at least one module")
        check(self.logging_steps > 0, "logging_steps", f"must be > 0, got {self.logging_steps}")
        check(self.save_steps >= 0, "save_steps", f"must be >= 0, got {self.save_steps}")
        check(self.weight_decay >= 0, "weight_decay", f"must be >= 0, got {self.weight_decay}")
        check(self.max_grad_norm >= 0, "max_grad_norm", f"must be >= 0 (0 disables clipping), got {self.max_grad_norm}")
        check(0 <= self.adam_beta1 < 1, "adam_beta1", f"must be in [0, 1), got {self.adam_beta1}")
        check(0 <= self.adam_beta2 < 1, "adam_beta2", f"must be in [0, 1), got {self.adam_beta2}")
        check(self.adam_epsilon > 0, "adam_epsilon", f"must be > 0, got {self.adam_epsilon}")
        if self.lora_layers is not None:
            check(all(i >= 0 for i in self.lora_layers), "lora_layers", "layer indices must be >= 0")

    def adapter_config(self) -> AdapterConfig:
        return AdapterConfig(
            r=self.lora_r,
            alpha=self.lora_alpha,
            dropout=self.lora_dropout,
            target_modules=self.target_modules,
            layers=self.lora_layers,
        )

    @property
    def effective_batch_size(self) -> int:
        return self.per_device_batch_size * self.gradient_accumulation_steps


@dataclass(frozen=True)
class SFTConfig(_TrainConfigBase):
    """Supervised fine-tuning. Loss on completion tokens only unless ``completion_only_loss=False``."""

    completion_only_loss: bool = True


@dataclass(frozen=True)
class DPOConfig(_TrainConfigBase):
    """Direct preference optimisation with TRL's loss definitions.

    ``reference``: "initial_policy" = the model as it is when DPO starts (after SFT: the SFT model);
    "base" = the model with adapters disabled; "model" = the ``ref_model`` passed to the trainer.
    ``precompute_ref_log_probs`` (default True): the reference is fixed, so its log-probs are computed
    once before the first step instead of by an extra forward every step (same numbers, less work).
    ``label_smoothing`` is only used by the ``robust`` loss (as in TRL) and rejected with others.
    """

    learning_rate: float = 1e-6
    beta: float = 0.1
    loss_type: LossType = "sigmoid"
    label_smoothing: float = 0.0
    reference: Reference = "initial_policy"
    precompute_ref_log_probs: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        check(math.isfinite(self.beta) and self.beta > 0, "beta", f"must be > 0, got {self.beta}")
        check(0.0 <= self.label_smoothing < 0.5, "label_smoothing", f"must be in [0, 0.5), got {self.label_smoothing}")
        check(self.label_smoothing == 0.0 or self.loss_type == "robust", "label_smoothing",
              f'is only used by loss_type "robust" (as in TRL); it has no effect with "{self.loss_type}"')


@dataclass(frozen=True)
class GenerationConfig(_FromDict):
    """Decoding settings. ``temperature=0`` is greedy decoding (the default, for reproducible answers)."""

    max_new_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check(self.max_new_tokens > 0, "max_new_tokens", f"must be > 0, got {self.max_new_tokens}")
        check(self.temperature >= 0, "temperature", f"must be >= 0, got {self.temperature}")
        check(0 < self.top_p <= 1, "top_p", f"must be in (0, 1], got {self.top_p}")
