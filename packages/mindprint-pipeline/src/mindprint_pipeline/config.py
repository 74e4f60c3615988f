"""PipelineConfig: the curriculum pipeline's settings (a stdlib dataclass, buildable from a dict).

It is the interfaces' :class:`~mindprint_interfaces.CurriculumConfig` (the decision knobs) plus
the backend, the paths and the two trainer sections, held typed: ``sft`` is an
:class:`~mindprint_interfaces.SFTConfig`, ``dpo`` a :class:`~mindprint_interfaces.DPOConfig`, so
every default comes from the one schema in mindprint-interfaces.

The original flat names (``sft_learning_rate``, ``dpo_beta``, ``lora_r`` ...) are still accepted
by :meth:`PipelineConfig.from_dict` and readable as attributes; they are shorthands for keys of
the typed sections (see :data:`FLAT_NAMES`). A key given inside ``sft`` / ``dpo`` wins over its
flat shorthand.
"""

from __future__ import annotations

import json
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from mindprint_interfaces import (
    BackendConfig,
    ConfigError,
    CPOConfig,
    CurriculumConfig,
    DPOConfig,
    GenerationConfig,
    KTOConfig,
    ORPOConfig,
    SFTConfig,
)
from mindprint_interfaces.config_base import setting
from mindprint_interfaces.configs import Device, DType, TrainConfigBase
from mindprint_interfaces.validation import build, coerce, short

# Keys that do not change what is trained: a resumed run may change them freely.
NON_TRAINING_KEYS: frozenset[str] = frozenset(
    {"backend_type", "device", "dtype", "data_dir", "output_dir", "checkpoint_dir", "model_path"}
)

# Flat name -> the (section, key) pairs it sets. ``sft_max_length`` and the LoRA shape set both
# sections: DPO continues the SFT adapter on the same sequences.
FLAT_NAMES: Mapping[str, tuple[tuple[str, str], ...]] = {
    "sft_learning_rate": (("sft", "learning_rate"),),
    "sft_batch_size": (("sft", "per_device_batch_size"),),
    "sft_max_length": (("sft", "max_length"), ("dpo", "max_length")),
    "dpo_learning_rate": (("dpo", "learning_rate"),),
    "dpo_batch_size": (("dpo", "per_device_batch_size"),),
    "dpo_beta": (("dpo", "beta"),),
    "dpo_loss_type": (("dpo", "loss_type"),),
    "lora_r": (("sft", "lora_r"), ("dpo", "lora_r")),
    "lora_alpha": (("sft", "lora_alpha"), ("dpo", "lora_alpha")),
}

SECTIONS: Mapping[str, type[TrainConfigBase]] = {"sft": SFTConfig, "dpo": DPOConfig, "orpo": ORPOConfig,
                                                  "cpo": CPOConfig, "kto": KTOConfig}

# Keys of a trainer section the pipeline sets per topic attempt; they do not describe the training.
PER_ATTEMPT_KEYS: tuple[str, ...] = ("seed", "output_dir")


class _FlatName:
    """Read-only view of a typed field under its original flat name: ``cfg.dpo_beta`` is ``cfg.dpo.beta``."""

    def __init__(self, section: str, key: str) -> None:
        self.section, self.key = section, key

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        return getattr(getattr(obj, self.section), self.key)


@dataclass(frozen=True)
class PipelineConfig(CurriculumConfig):
    """Settings of :class:`~mindprint_pipeline.DPOPipeline`.

    ``backend_type=None`` means "use the backend passed to the pipeline" or, with a transformers
    model and tokenizer passed in, legacy mode through the registered backend that wraps that library.
    """

    backend_type: str | None = setting(None, "backend name; null = the backend passed to the pipeline")
    device: Device = setting(BackendConfig.device, "device (see backend.device)")
    dtype: DType = setting(BackendConfig.dtype, "precision (see backend.dtype)")
    model_path: str | None = setting(None, "the base model (an HF directory)")
    sft: SFTConfig = setting(factory=SFTConfig, doc="SFT settings of each topic attempt")
    dpo: DPOConfig = setting(factory=DPOConfig, doc="DPO settings of each topic attempt")
    orpo: ORPOConfig = setting(factory=ORPOConfig, doc="ORPO settings (preference_method: orpo)")
    cpo: CPOConfig = setting(factory=CPOConfig, doc="CPO / SimPO settings (preference_method: cpo)")
    kto: KTOConfig = setting(factory=KTOConfig, doc="KTO settings (preference_method: kto)")
    markers_file: str | None = setting(None, "voice markers of the default evaluator (relative: to data_dir)")
    data_dir: str = setting("data", "where relative data files are looked up")
    output_dir: str = setting("outputs", "where runs, merged models and the result are written")
    checkpoint_dir: str | None = setting(None, "where the resumable state is kept; null = <output_dir>/checkpoints")
    seed: int = setting(TrainConfigBase.seed, "seed of topic attempt i, retry a: seed + 1000 * i + a")

    _aliases: ClassVar[Mapping[str, str]] = {**CurriculumConfig._aliases, "backend": "backend_type"}

    # the original flat names, readable as before
    sft_learning_rate = _FlatName("sft", "learning_rate")
    sft_batch_size = _FlatName("sft", "per_device_batch_size")
    sft_max_length = _FlatName("sft", "max_length")
    dpo_learning_rate = _FlatName("dpo", "learning_rate")
    dpo_batch_size = _FlatName("dpo", "per_device_batch_size")
    dpo_beta = _FlatName("dpo", "beta")
    dpo_loss_type = _FlatName("dpo", "loss_type")
    lora_r = _FlatName("sft", "lora_r")
    lora_alpha = _FlatName("sft", "lora_alpha")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, prefix: str = "") -> PipelineConfig:
        if not isinstance(data, Mapping):
            return build(cls, data, prefix=prefix)  # reports "expected a mapping"
        # Flat names are listed as aliases only so that a misspelt one gets a suggestion.
        aliases = {**cls._aliases, **{name: name for name in FLAT_NAMES}}
        return build(cls, fold_flat_names(data, prefix), prefix=prefix, aliases=aliases)

    def __post_init__(self) -> None:
        super().__post_init__()
        for name, section in SECTIONS.items():  # a caller's dict (the untyped style) becomes the typed section
            value = getattr(self, name)
            if isinstance(value, Mapping):
                object.__setattr__(self, name, section.from_dict(value, prefix=f"{name}."))
            elif not isinstance(value, section):
                raise ConfigError(f"{name}: expected a mapping of keys, got {short(value)}", key=name)
        if not self.output_dir:
            raise ConfigError("output_dir: must not be empty", key="output_dir")
        # Derive the per-topic trainer configs now, so a bad combination fails before any work starts.
        self.sft_config(seed=self.seed)
        self.dpo_config(seed=self.seed)
        self.preference_config(seed=self.seed)

    # -- derived paths -------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return Path(self.checkpoint_dir) if self.checkpoint_dir else Path(self.output_dir) / "checkpoints"

    def _run_dir(self, output_dir: str | Path | None) -> str:
        return str(output_dir) if output_dir is not None else str(Path(self.output_dir) / "runs")

    # -- derived trainer configs ---------------------------------------------------------------
    def sft_config(self, *, seed: int, output_dir: str | Path | None = None) -> SFTConfig:
        """``sft`` for one topic attempt: ``sft_epochs_per_topic`` epochs (``sft.max_steps > 0`` still wins)."""
        return self.sft.replace(num_epochs=self.sft_epochs_per_topic, seed=seed, output_dir=self._run_dir(output_dir))

    def dpo_config(self, *, seed: int, output_dir: str | Path | None = None) -> DPOConfig:
        """``dpo`` for one topic attempt: ``dpo.max_steps`` when set, else ``dpo_steps_per_topic`` steps."""
        steps = self.dpo.max_steps if self.dpo.max_steps > 0 else self.dpo_steps_per_topic
        return self.dpo.replace(max_steps=steps, seed=seed, output_dir=self._run_dir(output_dir))

    def preference_config(self, *, seed: int, output_dir: str | Path | None = None) -> TrainConfigBase:
        """The ``preference_method``'s section for one topic attempt: its ``max_steps`` when set, else
        ``dpo_steps_per_topic`` steps (as for DPO)."""
        if self.preference_method == "dpo":
            return self.dpo_config(seed=seed, output_dir=output_dir)
        section: TrainConfigBase = getattr(self, self.preference_method)
        steps = section.max_steps if section.max_steps > 0 else self.dpo_steps_per_topic
        return section.replace(max_steps=steps, seed=seed, output_dir=self._run_dir(output_dir))

    def generation_config(self, *, seed: int | None = None) -> GenerationConfig:
        """Greedy decoding for evaluation (reproducible answers on both backends)."""
        return GenerationConfig(max_new_tokens=self.eval_max_new_tokens, temperature=0.0, seed=seed)

    def training_fingerprint(self) -> dict[str, Any]:
        """The settings that change what is trained; a resume refuses a checkpoint made with others.

        Flat, with dotted keys for the trainer sections (``dpo.beta``) so a refusal names the one
        setting that changed; the sections as each topic trains them. JSON-shaped (lists, not
        tuples) so it compares equal to the copy read back from the checkpoint.
        """
        data = {k: v for k, v in self.to_dict().items() if k not in NON_TRAINING_KEYS and k not in SECTIONS}
        sections = [("sft", self.sft_config(seed=self.seed)), ("dpo", self.dpo_config(seed=self.seed))]
        if self.preference_method != "dpo":  # the method that trains the preference stage (dpo: a checkpoint
            sections.append((self.preference_method, self.preference_config(seed=self.seed)))  # made before resumes)
        for name, derived in sections:
            data.update({f"{name}.{k}": v for k, v in derived.to_dict().items() if k not in PER_ATTEMPT_KEYS})
        if not data.get("sft_replay_per_topic"):  # off: a checkpoint written before the setting existed resumes
            data.pop("sft_replay_per_topic", None)
        fingerprint: dict[str, Any] = json.loads(json.dumps(data))
        return fingerprint


def fold_flat_names(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"dpo_beta": 0.2, "dpo": {...}}`` -> ``{"dpo": {"beta": 0.2, ...}}`` (keys inside the section win)."""
    out = {k: v for k, v in data.items() if k not in FLAT_NAMES}
    for name, targets in FLAT_NAMES.items():
        if name not in data:
            continue
        for section, key in targets:
            nested = out.get(section)
            if isinstance(nested, TrainConfigBase):
                raise ConfigError(f"{prefix}{name}: {prefix}{section} is given as a {type(nested).__name__}; "
                                  f"set {key} there instead", key=f"{prefix}{name}")
            if nested is None:
                nested = {}
            if not isinstance(nested, Mapping):
                continue  # the section's own check reports it
            cls = SECTIONS[section]
            if key not in {cls._aliases.get(k, k) for k in nested}:
                value = coerce(data[name], typing.get_type_hints(cls)[key], f"{prefix}{name}")
                out[section] = {key: value, **nested}
    return out
