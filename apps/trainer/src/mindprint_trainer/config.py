"""The ``training_pipeline.yaml`` schema: loading, validation and override precedence.

Every section is a config dataclass and the file is validated by their ``from_dict``: ``backend``
is the interfaces' ``BackendConfig`` (read as ``backend.type``), ``sft`` / ``dpo`` / ``generation``
its ``SFTConfig`` / ``DPOConfig`` / ``GenerationConfig``, ``pipeline`` its ``CurriculumConfig`` —
the same classes the backends and the pipeline use, so there is one schema and one set of
defaults. Only ``model`` and ``data`` (where this app finds its files) are defined here.

Every validation error is a :class:`mindprint_interfaces.ConfigError` whose message names the
file, the dotted key path and (for choices) the allowed values, e.g.::

    configs/training_pipeline.yaml: backend.device: must be one of auto, cpu, cuda, mps, gpu, metal, got 'tpu'

``backend.type`` may name any backend; it is checked against the installed backends when the
backend is created (``Unknown backend: <name>`` with the known names).

Precedence for the backend: ``--backend`` > ``MINDPRINT_BACKEND`` > ``backend.type`` in the file.
``--device``/``--dtype``/``--set key=value`` override the file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

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
    TrainConfigBase,
)
from mindprint_interfaces.config_base import ConfigBase, setting
from mindprint_interfaces.configs import DEVICES, DTYPES, Device, DType, QuantizationConfig
from mindprint_interfaces.registry import ENV_VAR, canonical_name
from mindprint_interfaces.validation import short, suggest

from .yaml_safe import load_yaml

__all__ = [
    "DEFAULT_CONFIG_NAME", "DEVICES", "DTYPES", "BackendSection", "DType", "DataSection", "Device", "ModelSection",
    "TrackingSection", "TrainerConfig", "bundled_config_text", "deep_merge", "load_config", "parse_set", "read_yaml", "validate",
]

DEFAULT_CONFIG_NAME = "training_pipeline.yaml"
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")  # owner/name of a hub dataset

S = TypeVar("S", bound=ConfigBase)


@dataclass(frozen=True)
class BackendSection(BackendConfig):
    """The ``backend`` section: the interfaces' ``BackendConfig``, with the name written ``type`` in the file.

    Aliases (``torch``) are resolved to the registered name here, so the run's saved config and
    the launcher see the same name.
    """

    def __post_init__(self) -> None:
        if isinstance(self.backend_type, str):
            object.__setattr__(self, "backend_type", canonical_name(self.backend_type))

    @property
    def type(self) -> str | None:
        return self.backend_type


@dataclass(frozen=True)
class ModelSection(ConfigBase):
    """Which model the commands load."""

    path: str = setting("smollm2", 'a Hugging Face model directory; "smollm2" = the bundled SmolLM2-135M-Instruct')
    adapter: str | None = setting(None, "an adapter to start from (PEFT or mlx-lm layout)")
    quantization: QuantizationConfig | None = setting(
        None, "a quantized (QLoRA) base: {bits: 4|8, mode, group_size, ...}; null = full precision (--quantize 4)")


@dataclass(frozen=True)
class DataSection(ConfigBase):
    """Where the data files are; relative names are resolved against ``dir``."""

    dir: str = setting("data", "the directory relative file names below are resolved against")
    sft_file: str = setting("sft_data.jsonl", "{instruction, output, topic_id: unit/chapter/topic} or {messages}")
    preference_file: str = setting("preference_data.jsonl", "{prompt, chosen, rejected, topic_id}")
    quiz_file: str | None = setting(None, "{question, answer, topic_id}: before/after answers")
    markers_file: str | None = setting("voice_markers.json", "voice markers of the default evaluator")
    columns: dict[str, str] = setting(factory=dict, doc="our field -> the dataset's column, e.g. "
                                                        "{instruction: question, output: answer}")
    split: str = setting("train", "the split of a save_to_disk DatasetDict or a cached hub dataset")
    revision: str | None = setting(None, "the revision (branch, tag, commit) of a cached hub dataset")

    def resolve(self, name: str | None) -> Path | None:
        """``name`` against ``dir``; data files may also be parquet/arrow/csv/json(l) files, ``save_to_disk``
        directories, or a hub dataset id (``owner/name``, read from the local HF cache; see dataset_input)."""
        if name is None:
            return None
        path = Path(name)
        if path.is_absolute():
            return path
        resolved = Path(self.dir) / path
        if not resolved.exists() and not path.exists() and HUB_ID.match(name):
            return path  # a hub dataset id
        return resolved


@dataclass(frozen=True)
class TrackingSection(ConfigBase):
    """Options of the experiment trackers named in ``report_to`` (each used only when its tracker is on)."""

    run_name: str | None = setting(None, "the trackers' run name (default: the run directory's name)")
    tensorboard_dir: str | None = setting(None, "TensorBoard event files (default: <run>/tensorboard)")
    mlflow_tracking_uri: str | None = setting(None, "MLflow server, sqlite:/// or file URI (default: "
                                                    "MLFLOW_TRACKING_URI, else MLflow's own default)")
    mlflow_experiment: str = setting("mindprint", "the MLflow experiment the runs go into")
    wandb_project: str = setting("mindprint", "the W&B project")
    wandb_entity: str | None = setting(None, "the W&B entity (team or user; default: yours)")
    wandb_mode: Literal["online", "offline", "disabled"] | None = setting(
        None, "W&B mode (default: WANDB_MODE, else online); offline files upload later with `wandb sync`")

    def logger_options(self) -> dict[str, dict[str, Any]]:
        return {"tensorboard": {"log_dir": self.tensorboard_dir},
                "mlflow": {"tracking_uri": self.mlflow_tracking_uri, "experiment": self.mlflow_experiment},
                "wandb": {"project": self.wandb_project, "entity": self.wandb_entity, "mode": self.wandb_mode}}


@dataclass(frozen=True)
class TrainerConfig(ConfigBase):
    """The whole file: one section per concern, each validated by its own class."""

    backend: BackendSection = setting(factory=BackendSection, doc="which backend, device and precision")
    model: ModelSection = setting(factory=ModelSection, doc="the model to load")
    data: DataSection = setting(factory=DataSection, doc="the data files")
    sft: SFTConfig = setting(factory=SFTConfig, doc="SFT settings (mindprint_interfaces.SFTConfig)")
    dpo: DPOConfig = setting(factory=DPOConfig, doc="DPO settings (mindprint_interfaces.DPOConfig)")
    generation: GenerationConfig = setting(factory=GenerationConfig, doc="decoding for generate / eval / demo")
    pipeline: CurriculumConfig = setting(factory=CurriculumConfig, doc="the curriculum loop (mindprint-pipeline)")
    output_dir: str = setting("runs", "each run writes <output_dir>/<timestamp>-<command>/")
    orpo: ORPOConfig = setting(factory=ORPOConfig, doc="ORPO settings (mindprint_interfaces.ORPOConfig)")
    cpo: CPOConfig = setting(factory=CPOConfig, doc="CPO / SimPO settings (mindprint_interfaces.CPOConfig)")
    kto: KTOConfig = setting(factory=KTOConfig, doc="KTO settings (mindprint_interfaces.KTOConfig)")
    report_to: tuple[str, ...] = setting((), "experiment trackers fed every metrics.jsonl row: tensorboard, "
                                              "mlflow, wandb (hf=report_to; options in `tracking`)", hf="report_to")
    tracking: TrackingSection = setting(factory=TrackingSection, doc="options of the trackers in report_to")

    def __post_init__(self) -> None:
        # ``none`` (as in transformers) switches the trackers off, e.g. ``--report-to none`` over the file's list.
        names = tuple(dict.fromkeys(n.strip().lower() for n in self.report_to if n.strip().lower() != "none"))
        from .trackers import known_trackers

        known = known_trackers() if names else []
        for name in names:
            if name not in known:
                raise ConfigError(f"report_to: unknown tracker {name!r}{suggest(name, known)} "
                                  f"(known: {', '.join(known)}, none)", key="report_to")
        object.__setattr__(self, "report_to", names)

    def sft_config(self, **overrides: Any) -> SFTConfig:
        return _section(self.sft, "sft", overrides)

    def dpo_config(self, **overrides: Any) -> DPOConfig:
        return _section(self.dpo, "dpo", overrides)

    def method_config(self, method: str, **overrides: Any) -> TrainConfigBase:
        """The section of a training method (sft, dpo, orpo, cpo, kto) with ``overrides``."""
        section: TrainConfigBase = getattr(self, method)
        return _section(section, method, overrides)

    def generation_config(self, **overrides: Any) -> GenerationConfig:
        return _section(self.generation, "generation", overrides)

    def to_plain(self) -> dict[str, Any]:
        """The config as the file writes it (``backend.type``, lists): loads back to an equal config."""
        data: dict[str, Any] = _plain(self.to_dict())
        backend = data["backend"]
        data["backend"] = {"type": backend.pop("backend_type"), **backend}
        return data

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_plain(), sort_keys=False, default_flow_style=False)


def _section(current: S, name: str, overrides: Mapping[str, Any]) -> S:
    if not overrides:
        return current
    return type(current).from_dict({**current.to_dict(), **overrides}, prefix=f"{name}.")


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# --------------------------------------------------------------------------------------------
# loading


def bundled_config_text() -> str:
    return resources.files("mindprint_trainer").joinpath("configs", DEFAULT_CONFIG_NAME).read_text(encoding="utf-8")


def read_yaml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError("config file not found", source=str(p))
    data = load_yaml(p.read_bytes(), str(p))  # bounded aliases, no duplicate keys, BOM ok, line of bad bytes
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"the top level must be a mapping of sections, got {type(data).__name__}", source=str(p))
    return data


def parse_set(items: Sequence[str]) -> dict[str, Any]:
    """``["sft.learning_rate=1e-4", "backend.type=mlx"]`` -> nested dict (values parsed as YAML)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects KEY=VALUE (e.g. sft.learning_rate=1e-4), got {short(item)}")
        try:
            value = load_yaml(raw, f"--set {key.strip()}") if raw.strip() else None
        except ConfigError as exc:
            if "aliases expand" in str(exc) or "appears twice" in str(exc):
                raise
            value = raw
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {short(item)} conflicts with another --set")
        node[parts[-1]] = value
    return out


def deep_merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def validate(data: Mapping[str, Any], source: str | None = None) -> TrainerConfig:
    """Build the config from ``data``; an error names ``source`` (the file), the key path and the problem."""
    try:
        return TrainerConfig.from_dict(data)
    except ConfigError as exc:
        raise ConfigError(str(exc), key=exc.key, source=source) from None


def load_config(
    path: str | Path | None = None,
    *,
    backend: str | None = None,
    device: str | None = None,
    dtype: str | None = None,
    sets: Sequence[str] = (),
    extra: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> TrainerConfig:
    """Load the file (or the bundled defaults when ``path`` is None) and apply the overrides.

    Backend precedence: ``backend`` argument (``--backend``) > ``MINDPRINT_BACKEND`` > file.
    """
    env = os.environ if env is None else env
    if path is not None:
        data = read_yaml(path)
        source = str(path)
    else:
        data = yaml.safe_load(bundled_config_text()) or {}
        source = f"<bundled {DEFAULT_CONFIG_NAME}>"
    # Validate the file on its own first so its errors name the file.
    validate(data, source)
    merged = deep_merge(data, extra or {})
    merged = deep_merge(merged, parse_set(sets))
    flags: dict[str, Any] = {}
    env_backend = env.get(ENV_VAR)
    if backend:
        flags["type"] = backend
    elif env_backend:
        flags["type"] = env_backend
    if device:
        flags["device"] = device
    if dtype:
        flags["dtype"] = dtype
    if flags:
        merged = deep_merge(merged, {"backend": flags})
    try:
        return validate(merged, None)
    except ConfigError as exc:
        origin = "command line"
        if exc.key == "backend.type" and not backend and env_backend:
            origin = f"{ENV_VAR}={env_backend!r}"
        raise ConfigError(str(exc), key=exc.key, source=origin) from None
