"""The configuration schema: stdlib dataclasses (so this package stays dependency-free).

These classes are the one schema of every layer: the backends' trainers take ``SFTConfig`` /
``DPOConfig``, the pipeline holds them typed, and the ``mindprint`` app validates its YAML
sections through them. Each can be built from a plain dict with :meth:`ConfigBase.from_dict`:
unknown keys raise with the closest valid key suggested, values are type-checked and
range-checked, and every error names the key. Every field is documented (see
:func:`~mindprint_interfaces.config_base.field_docs`). Training defaults follow the HF Trainer /
TRL defaults unless noted, so a user moving from TRL gets the same behaviour.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, get_args

from .config_base import ConfigBase, FieldDoc, field_docs, setting
from .validation import check

DEFAULT_TARGET_MODULES: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")

Device = Literal["auto", "cpu", "cuda", "mps", "gpu", "metal"]
DType = Literal["auto", "float32", "float16", "bfloat16"]
LRScheduler = Literal["linear", "cosine", "constant", "constant_with_warmup"]
LossType = Literal["sigmoid", "ipo", "hinge", "robust"]
Reference = Literal["initial_policy", "base", "model"]
Truncation = Literal["truncate", "drop", "error"]

DEVICES: tuple[str, ...] = get_args(Device)
DTYPES: tuple[str, ...] = get_args(DType)

_FromDict = ConfigBase  # deprecated private name, kept for existing imports

__all__ = [
    "DEFAULT_TARGET_MODULES", "DEVICES", "DTYPES", "AdapterConfig", "BackendConfig", "ConfigBase", "CurriculumConfig",
    "DPOConfig", "DType", "Device", "FieldDoc", "GenerationConfig", "LRScheduler", "LossType", "Reference",
    "SFTConfig", "TrainConfigBase", "Truncation", "field_docs", "setting",
    "QuantMode", "QuantizationConfig",
]


@dataclass(frozen=True)
class BackendConfig(ConfigBase):
    """Which backend, on which device, in which precision. ``backend_type=None`` means "not chosen yet"."""

    backend_type: str | None = setting(
        None, "registered backend name (pytorch, mlx or any installed one); null: choose with --backend or "
              "MINDPRINT_BACKEND")
    device: Device = setting("auto", "auto: cuda > mps > cpu on PyTorch, Metal > CPU on MLX; gpu: the backend's GPU")
    dtype: DType = setting("auto", "weights and compute precision; auto: float32 on CPU, bf16/fp16 on GPU",
                           hf="torch_dtype")
    seed: int = setting(42, "seed of the backend's random generators", hf="seed")
    options: dict[str, Any] = setting(factory=dict, doc="backend-specific options, passed to the backend as they are")

    _aliases: ClassVar[Mapping[str, str]] = {"type": "backend_type"}


@dataclass(frozen=True)
class AdapterConfig(ConfigBase):
    """LoRA hyper-parameters; identical meaning on both backends (PEFT semantics: scale = alpha / r)."""

    r: int = setting(8, "LoRA rank", hf="r")
    alpha: float = setting(16.0, "LoRA scale numerator (scale = alpha / r)", hf="lora_alpha")
    dropout: float = setting(0.0, "dropout on the LoRA input", hf="lora_dropout")
    target_modules: tuple[str, ...] = setting(DEFAULT_TARGET_MODULES, "linear layers that get an adapter: module names and/or the presets attention, mlp, all-linear (architectures.py)",
                                              hf="target_modules")
    layers: tuple[int, ...] | None = setting(None, "explicit layer indices; null = every layer",
                                             hf="layers_to_transform")

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
class TrainConfigBase(ConfigBase):
    """The settings SFT and DPO share: optimisation, batching, sequence length, LoRA, saving."""

    learning_rate: float = setting(2e-4, "peak learning rate (AdamW)", hf="learning_rate")
    num_epochs: float = setting(1.0, "passes over the data (ignored when max_steps > 0)", hf="num_train_epochs")
    max_steps: int = setting(-1, "optimizer steps; > 0 overrides num_epochs, -1 = use num_epochs", hf="max_steps")
    per_device_batch_size: int = setting(4, "examples per process and micro-batch",
                                         hf="per_device_train_batch_size")
    gradient_accumulation_steps: int = setting(1, "micro-batches per optimizer step",
                                               hf="gradient_accumulation_steps")
    max_length: int = setting(1024, "tokens per example (prompt + completion)", hf="max_length")
    truncation: Truncation = setting("truncate", "over-long examples: cut, drop (reported) or raise")
    warmup_ratio: float = setting(0.0, "fraction of the steps with a linearly rising learning rate",
                                  hf="warmup_ratio")
    warmup_steps: int = setting(0, "warm-up steps (wins over warmup_ratio when > 0)", hf="warmup_steps")
    lr_scheduler: LRScheduler = setting("linear", "learning-rate schedule after warm-up", hf="lr_scheduler_type")
    seed: int = setting(42, "seed of data order, dropout and adapter initialisation", hf="seed")
    lora_r: int = setting(8, "LoRA rank", hf="r")
    lora_alpha: float = setting(16.0, "LoRA scale numerator (scale = lora_alpha / lora_r)", hf="lora_alpha")
    lora_dropout: float = setting(0.0, "dropout on the LoRA input", hf="lora_dropout")
    target_modules: tuple[str, ...] = setting(DEFAULT_TARGET_MODULES, "linear layers that get an adapter: module names and/or the presets attention, mlp, all-linear (architectures.py)",
                                              hf="target_modules")
    lora_layers: tuple[int, ...] | None = setting(None, "layer indices that get adapters; null = every layer",
                                                  hf="layers_to_transform")
    output_dir: str = setting("outputs", "where the trainer writes its files", hf="output_dir")
    logging_steps: int = setting(1, "report metrics every this many steps", hf="logging_steps")
    save_steps: int = setting(0, "every this many steps: save the adapter and a full-state checkpoint-<step>/ under "
                                 "output_dir (resumable on either backend); 0 = only the adapter, at the end",
                              hf="save_steps")
    weight_decay: float = setting(0.0, "AdamW weight decay", hf="weight_decay")
    max_grad_norm: float = setting(1.0, "gradient clipping norm; 0 disables clipping", hf="max_grad_norm")
    adam_beta1: float = setting(0.9, "AdamW beta1", hf="adam_beta1")
    adam_beta2: float = setting(0.999, "AdamW beta2", hf="adam_beta2")
    adam_epsilon: float = setting(1e-8, "AdamW epsilon", hf="adam_epsilon")
    gradient_checkpointing: bool = setting(
        False, "recompute each decoder layer's activations in the backward pass (less memory, same numbers, slower)",
        hf="gradient_checkpointing")
    save_total_limit: int | None = setting(
        None, "checkpoints kept: the newest this many checkpoint-<step>/ directories; null = all",
        hf="save_total_limit")

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
        check(self.save_total_limit is None or self.save_total_limit > 0, "save_total_limit",
              f"must be > 0 or null, got {self.save_total_limit}")
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


_TrainConfigBase = TrainConfigBase  # deprecated private name, kept for existing imports


@dataclass(frozen=True)
class SFTConfig(TrainConfigBase):
    """Supervised fine-tuning. Loss on completion tokens only unless ``completion_only_loss=False``."""

    completion_only_loss: bool = setting(True, "loss on the completion tokens only (false: on the prompt too)",
                                         hf="completion_only_loss")
    packing: bool = setting(
        False, "pack whole examples into rows of max_length tokens (best-fit decreasing, TRL's 'bfd'), padding-free: "
               "positions restart and attention stops at each example's boundary, so every example's loss is its "
               "unpacked loss; per_device_batch_size then counts packed rows", hf="packing")


@dataclass(frozen=True)
class DPOConfig(TrainConfigBase):
    """Direct preference optimisation with TRL's loss definitions.

    ``reference``: "initial_policy" = the model as it is when DPO starts (after SFT: the SFT model);
    "base" = the model with adapters disabled; "model" = the ``ref_model`` passed to the trainer.
    ``precompute_ref_log_probs`` (default True): the reference is fixed, so its log-probs are computed
    once before the first step instead of by an extra forward every step (same numbers, less work).
    ``label_smoothing`` is only used by the ``robust`` loss (as in TRL) and rejected with others.
    """

    learning_rate: float = setting(1e-6, "peak learning rate (AdamW; TRL's DPO default)", hf="learning_rate")
    beta: float = setting(0.1, "strength of the pull towards the reference model", hf="beta")
    loss_type: LossType = setting("sigmoid", "DPO loss (TRL's definitions)", hf="loss_type")
    label_smoothing: float = setting(0.0, "assumed label noise; robust loss only", hf="label_smoothing")
    reference: Reference = setting(
        "initial_policy", "reference model: initial_policy = the model when DPO starts, base = adapters disabled, "
                          "model = the ref_model passed in")
    precompute_ref_log_probs: bool = setting(
        True, "reference log-probs computed once before the first step (same numbers; TRL's default is false)",
        hf="precompute_ref_log_probs")

    def __post_init__(self) -> None:
        super().__post_init__()
        check(math.isfinite(self.beta) and self.beta > 0, "beta", f"must be > 0, got {self.beta}")
        check(0.0 <= self.label_smoothing < 0.5, "label_smoothing", f"must be in [0, 0.5), got {self.label_smoothing}")
        check(self.label_smoothing == 0.0 or self.loss_type == "robust", "label_smoothing",
              f'is only used by loss_type "robust" (as in TRL); it has no effect with "{self.loss_type}"')


@dataclass(frozen=True)
class GenerationConfig(ConfigBase):
    """Decoding settings. ``temperature=0`` is greedy decoding (the default, for reproducible answers)."""

    max_new_tokens: int = setting(128, "tokens generated at most", hf="max_new_tokens")
    temperature: float = setting(0.0, "sampling temperature; 0 = greedy", hf="temperature")
    top_p: float = setting(1.0, "nucleus sampling mass", hf="top_p")
    seed: int | None = setting(None, "sampling seed; null = the backend's")
    stop: tuple[str, ...] = setting((), "strings that end the answer (not included)", hf="stop_strings")

    def __post_init__(self) -> None:
        check(self.max_new_tokens > 0, "max_new_tokens", f"must be > 0, got {self.max_new_tokens}")
        check(self.temperature >= 0, "temperature", f"must be >= 0, got {self.temperature}")
        check(0 < self.top_p <= 1, "top_p", f"must be in (0, 1], got {self.top_p}")


@dataclass(frozen=True)
class CurriculumConfig(ConfigBase):
    """The curriculum's decisions: how much to train per topic, when DPO runs, when a topic passes.

    Each topic: SFT for ``sft_epochs_per_topic`` epochs (on the topic's records plus
    ``sft_replay_per_topic`` records of earlier topics), evaluate; DPO for ``dpo_steps_per_topic``
    steps when ``accuracy >= accuracy_threshold`` and ``voice < dpo_trigger_threshold``; the topic
    passes when ``(accuracy + voice) / 2 >= topic_pass_threshold``, else it is retried.
    The defaults are those of the ``mindprint`` app's bundled configuration.
    """

    sft_epochs_per_topic: float = setting(3.0, "SFT epochs per topic attempt (sets sft.num_epochs per topic)")
    sft_replay_per_topic: int = setting(
        0, "SFT records of earlier topics added to each topic's SFT (rehearsal against forgetting them): up to "
           "this many, round-robin from the first topic on, each topic's records in file order")
    dpo_steps_per_topic: int = setting(
        10, "DPO steps per topic (sets dpo.max_steps per topic, unless dpo.max_steps is set)")
    accuracy_threshold: float = setting(0.5, "DPO runs only when accuracy >= this ...")
    dpo_trigger_threshold: float = setting(0.8, "... and voice < this")
    topic_pass_threshold: float = setting(0.6, "a topic passes when (accuracy + voice) / 2 >= this")
    max_retries_per_topic: int = setting(1, "attempts after the first one for a topic that did not pass")
    merge_after_unit: bool = setting(True, "merge (verified) each finished unit's adapter into the base model")
    eval_max_new_tokens: int = setting(64, "answer length during evaluation")
    eval_max_records: int | None = setting(None, "records evaluated per topic; null = every record")
    preference_method: Literal["dpo", "orpo", "cpo", "kto"] = setting(
        "dpo", "the preference stage's method (its settings: the section of the same name)")
    sft_before_preference: bool = setting(
        True, "SFT before the preference stage; false (orpo / cpo only): the preference stage alone, on every "
              "topic with preference records")

    _aliases: ClassVar[Mapping[str, str]] = {
        "sft_epochs": "sft_epochs_per_topic",
        "dpo_steps": "dpo_steps_per_topic",
        "max_retries": "max_retries_per_topic",
    }

    def __post_init__(self) -> None:
        for key in ("accuracy_threshold", "dpo_trigger_threshold", "topic_pass_threshold"):
            value = getattr(self, key)
            check(math.isfinite(value) and 0.0 <= value <= 1.0, key, f"must be in [0, 1], got {value}")
        check(self.sft_epochs_per_topic > 0, "sft_epochs_per_topic", f"must be > 0, got {self.sft_epochs_per_topic}")
        check(self.sft_replay_per_topic >= 0, "sft_replay_per_topic",
              f"must be >= 0, got {self.sft_replay_per_topic}")
        check(self.dpo_steps_per_topic > 0, "dpo_steps_per_topic", f"must be > 0, got {self.dpo_steps_per_topic}")
        check(self.max_retries_per_topic >= 0, "max_retries_per_topic",
              f"must be >= 0, got {self.max_retries_per_topic}")
        check(self.eval_max_new_tokens > 0, "eval_max_new_tokens", f"must be > 0, got {self.eval_max_new_tokens}")
        check(self.eval_max_records is None or self.eval_max_records > 0, "eval_max_records",
              f"must be > 0 or null, got {self.eval_max_records}")
        check(self.sft_before_preference or self.preference_method in ("orpo", "cpo"), "sft_before_preference",
              f"false needs a reference-free preference_method (orpo or cpo), not {self.preference_method!r}: "
              "its reference would be the untrained model")



QuantMode = Literal["auto", "affine", "nf4", "fp4", "int8"]
QUANT_BITS: tuple[int, ...] = (4, 8)
MLX_GROUP_SIZES: tuple[int, ...] = (32, 64, 128)
BNB_4BIT_BLOCKSIZE = 64  # bitsandbytes' 4-bit block size (transformers' BitsAndBytesConfig has no setting for it)


@dataclass(frozen=True)
class QuantizationConfig(ConfigBase):
    """A quantized (QLoRA) base: the frozen base weights in ``bits`` bits, LoRA on top in full precision.

    One request for both backends: ``load_model(path, quantization={"bits": 4})``, ``model.quantization``
    in the app's YAML, ``--quantize 4`` on the command line. ``mode: auto`` picks each backend's own
    scheme (MLX: affine with ``group_size`` 64, as ``mlx_lm.convert -q``; torch: bitsandbytes NF4 for 4 bits,
    LLM.int8 for 8). Fields only one backend can honour are refused by the other
    (:meth:`for_backend`), naming the field, because the numbers would differ.
    """

    bits: int = setting(4, "bits per base weight: 4 or 8", hf="load_in_4bit / load_in_8bit")
    mode: QuantMode = setting(
        "auto", "auto: the backend's own (MLX affine, torch nf4 / int8); affine: MLX; nf4, fp4 (4 bits), "
                "int8 (8 bits): torch bitsandbytes", hf="bnb_4bit_quant_type")
    group_size: int | None = setting(
        None, "weights sharing one scale: MLX 32, 64 (default) or 128; torch 4-bit: 64 only (bitsandbytes)")
    compute_dtype: DType = setting(
        "auto", "dtype of the matmuls on the dequantized weights; auto: the backend dtype (torch only; MLX "
                "computes in the model dtype)", hf="bnb_4bit_compute_dtype")
    double_quant: bool = setting(False, "quantize the quantization constants too (torch 4-bit only)",
                                 hf="bnb_4bit_use_double_quant")

    _aliases: ClassVar[Mapping[str, str]] = {"quant_type": "mode", "nbits": "bits"}

    def __post_init__(self) -> None:
        check(self.bits in QUANT_BITS, "quantization.bits", f"must be 4 or 8, got {self.bits}")
        check(self.mode not in ("nf4", "fp4") or self.bits == 4, "quantization.mode",
              f"{self.mode} is a 4-bit format, but bits is {self.bits}")
        check(self.mode != "int8" or self.bits == 8, "quantization.mode", f"int8 needs bits: 8, got {self.bits}")
        check(self.group_size is None or self.group_size > 0, "quantization.group_size",
              f"must be > 0, got {self.group_size}")
        check(not self.double_quant or self.bits == 4, "quantization.double_quant", "applies to 4-bit only")

    @property
    def label(self) -> str:
        """``4-bit nf4`` / ``8-bit affine (group 64)``: for logs and run records."""
        group = f" (group {self.group_size})" if self.group_size else ""
        return f"{self.bits}-bit {self.mode}{group}"

    def for_backend(self, backend: str) -> QuantizationConfig:
        """This request resolved for ``backend`` ("mlx" or "pytorch"): ``mode``/``group_size`` filled in;
        a field that backend cannot honour raises ConfigError naming it."""
        if backend == "mlx":
            check(self.mode in ("auto", "affine"), "quantization.mode",
                  f"{self.mode!r} is a bitsandbytes format (PyTorch backend); MLX quantizes affine "
                  "(mode: affine or auto)")
            mlx_group = 64 if self.group_size is None else self.group_size
            check(mlx_group in MLX_GROUP_SIZES, "quantization.group_size",
                  f"MLX supports group sizes {', '.join(map(str, MLX_GROUP_SIZES))}, got {mlx_group}")
            check(self.compute_dtype == "auto", "quantization.compute_dtype",
                  "MLX computes quantized layers in the model dtype: set backend.dtype instead")
            check(not self.double_quant, "quantization.double_quant", "is a bitsandbytes option (PyTorch backend)")
            return self.replace(mode="affine", group_size=mlx_group)
        if backend == "pytorch":
            check(self.mode != "affine", "quantization.mode",
                  "affine is MLX's format; the PyTorch backend quantizes with bitsandbytes (nf4, fp4, int8)")
            mode = self.mode if self.mode != "auto" else ("nf4" if self.bits == 4 else "int8")
            if self.bits == 4:
                check(self.group_size in (None, BNB_4BIT_BLOCKSIZE), "quantization.group_size",
                      f"bitsandbytes 4-bit uses blocks of {BNB_4BIT_BLOCKSIZE}, got {self.group_size}")
                group: int | None = BNB_4BIT_BLOCKSIZE
            else:
                check(self.group_size is None, "quantization.group_size",
                      "bitsandbytes 8-bit (LLM.int8) scales per row; group_size does not apply")
                group = None
            return self.replace(mode=mode, group_size=group)
        return self


CPOLossType = Literal["sigmoid", "hinge", "ipo", "simpo"]
KTOLossType = Literal["kto", "apo_zero_unpaired"]
KTOReference = Literal["initial_policy", "base"]


@dataclass(frozen=True)
class ORPOConfig(TrainConfigBase):
    """Odds-ratio preference optimisation (TRL's ``ORPOConfig``): no reference model, no SFT stage needed.

    loss = NLL of the chosen sequence (TRL 1.16: over prompt and completion tokens, mean over the
    micro-batch's tokens) - beta * mean(log sigmoid(log odds ratio)), the odds taken on the
    length-normalised (per-token mean) completion log-probs. ``beta`` is the paper's lambda.
    """

    learning_rate: float = setting(1e-6, "peak learning rate (AdamW; TRL's ORPO default)", hf="learning_rate")
    beta: float = setting(0.1, "weight of the odds-ratio term (the paper's lambda)", hf="beta")

    def __post_init__(self) -> None:
        super().__post_init__()
        check(math.isfinite(self.beta) and self.beta > 0, "beta", f"must be > 0, got {self.beta}")


@dataclass(frozen=True)
class CPOConfig(TrainConfigBase):
    """Contrastive preference optimisation and SimPO (TRL's ``CPOConfig``): no reference model.

    loss = mean(preference loss on beta * (chosen - rejected log-probs)) + cpo_alpha * NLL of the chosen
    completions. ``loss_type="simpo"`` (and ``"ipo"``) use length-normalised log-probs; simpo subtracts
    the margin ``simpo_gamma / beta``. SimPO as in its paper is ``loss_type="simpo", cpo_alpha=0``.
    ``label_smoothing`` is used by sigmoid and simpo only (as in TRL) and rejected with the others.
    """

    learning_rate: float = setting(1e-6, "peak learning rate (AdamW; TRL's CPO default)", hf="learning_rate")
    beta: float = setting(0.1, "temperature of the preference loss", hf="beta")
    loss_type: CPOLossType = setting("sigmoid", "CPO loss (TRL's definitions); simpo = SimPO", hf="loss_type")
    label_smoothing: float = setting(0.0, "assumed label noise; sigmoid and simpo losses only",
                                     hf="label_smoothing")
    cpo_alpha: float = setting(1.0, "weight of the NLL (behaviour cloning) term on the chosen completions",
                               hf="cpo_alpha")
    simpo_gamma: float = setting(0.5, "SimPO target reward margin (loss_type simpo only)", hf="simpo_gamma")

    def __post_init__(self) -> None:
        super().__post_init__()
        check(math.isfinite(self.beta) and self.beta > 0, "beta", f"must be > 0, got {self.beta}")
        check(0.0 <= self.label_smoothing < 0.5, "label_smoothing", f"must be in [0, 0.5), got {self.label_smoothing}")
        check(self.label_smoothing == 0.0 or self.loss_type in ("sigmoid", "simpo"), "label_smoothing",
              f'is only used by loss_type "sigmoid" and "simpo" (as in TRL); it has no effect with "{self.loss_type}"')
        check(math.isfinite(self.cpo_alpha) and self.cpo_alpha >= 0, "cpo_alpha", f"must be >= 0, got {self.cpo_alpha}")
        check(math.isfinite(self.simpo_gamma), "simpo_gamma", f"must be finite, got {self.simpo_gamma}")


@dataclass(frozen=True)
class KTOConfig(TrainConfigBase):
    """Kahneman-Tversky optimisation (TRL's ``KTOConfig``) on unpaired records ``{prompt, completion, label}``.

    Paired files (``chosen``/``rejected``) are unpaired as TRL does: each pair gives a desirable and an
    undesirable record. The reference KL term (``loss_type="kto"``) is estimated from mismatched pairs:
    within each batch of ``per_device_batch_size`` consecutive records the completions are rotated by one,
    so the batches run in data order (TRL requires sequential sampling for it) and
    ``per_device_batch_size`` must be > 1. The reference is the model when KTO starts
    (``initial_policy``) or the model with adapters disabled (``base``); the reference is fixed, so
    mindprint-mlx computes its log-probs once before the first step and mindprint-torch runs TRL's
    reference forward every step (same numbers).
    """

    learning_rate: float = setting(1e-6, "peak learning rate (AdamW; TRL's KTO default)", hf="learning_rate")
    beta: float = setting(0.1, "strength of the pull towards the reference model", hf="beta")
    loss_type: KTOLossType = setting("kto", "KTO loss (TRL's definitions)", hf="loss_type")
    desirable_weight: float = setting(1.0, "weight of the desirable (label true) records' losses",
                                      hf="desirable_weight")
    undesirable_weight: float = setting(1.0, "weight of the undesirable (label false) records' losses",
                                        hf="undesirable_weight")
    reference: KTOReference = setting(
        "initial_policy", "reference model: initial_policy = the model when KTO starts, base = adapters disabled")

    def __post_init__(self) -> None:
        super().__post_init__()
        check(math.isfinite(self.beta) and self.beta > 0, "beta", f"must be > 0, got {self.beta}")
        check(math.isfinite(self.desirable_weight) and self.desirable_weight > 0, "desirable_weight",
              f"must be > 0, got {self.desirable_weight}")
        check(math.isfinite(self.undesirable_weight) and self.undesirable_weight > 0, "undesirable_weight",
              f"must be > 0, got {self.undesirable_weight}")
        check(self.loss_type != "kto" or self.per_device_batch_size > 1, "per_device_batch_size",
              'must be > 1 for loss_type "kto": the KL term is estimated from mismatched records of one batch')


__all__ += ["CPOConfig", "CPOLossType", "KTOConfig", "KTOLossType", "KTOReference", "ORPOConfig"]
