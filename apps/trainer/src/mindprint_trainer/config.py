"""The ``training_pipeline.yaml`` schema: loading, validation and override precedence.

Every validation error is a :class:`mindprint_interfaces.ConfigError` whose message names the
file, the dotted key path and (for choices) the allowed values, e.g.::

    configs/training_pipeline.yaml: backend.device: must be one of auto, cpu, cuda, mps, gpu, got 'tpu'

The ``sft`` and ``dpo`` sections are validated by the interfaces' ``SFTConfig``/``DPOConfig``
dataclasses (one source of truth for the training hyper-parameters); the other sections are
pydantic models.

Precedence for the backend: ``--backend`` > ``MINDPRINT_BACKEND`` > ``backend.type`` in the file.
``--device``/``--dtype``/``--set key=value`` override the file.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from mindprint_interfaces import ConfigError, DPOConfig, GenerationConfig, SFTConfig
from mindprint_interfaces.registry import ENV_VAR, canonical_name
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

BackendType = Literal["pytorch", "mlx"]
Device = Literal["auto", "cpu", "cuda", "mps", "gpu"]
DType = Literal["auto", "float32", "float16", "bfloat16"]

DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda", "mps", "gpu")
DTYPES: tuple[str, ...] = ("auto", "float32", "float16", "bfloat16")
BACKENDS: tuple[str, ...] = ("pytorch", "mlx")

DEFAULT_CONFIG_NAME = "training_pipeline.yaml"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class BackendSection(_Section):
    type: BackendType | None = None
    device: Device = "auto"
    dtype: DType = "auto"
    seed: int = 42

    @field_validator("type", mode="before")
    @classmethod
    def _canonical(cls, value: Any) -> Any:
        return canonical_name(value) if isinstance(value, str) else value


class ModelSection(_Section):
    path: str = "smollm2"  # an HF directory; "smollm2" = the bundled SmolLM2-135M-Instruct
    adapter: str | None = None  # start from this adapter (PEFT or mlx-lm layout)


class DataSection(_Section):
    dir: str = "data"
    sft_file: str = "sft_data.jsonl"
    preference_file: str = "preference_data.jsonl"
    quiz_file: str | None = None  # questions for before/after answers (defaults to none)
    markers_file: str | None = "voice_markers.json"

    def resolve(self, name: str | None) -> Path | None:
        if name is None:
            return None
        path = Path(name)
        return path if path.is_absolute() else Path(self.dir) / path


class PipelineSection(_Section):
    sft_epochs_per_topic: float = Field(default=3.0, gt=0)
    dpo_steps_per_topic: int = Field(default=10, ge=0)
    accuracy_threshold: float = Field(default=0.5, ge=0, le=1)
    dpo_trigger_threshold: float = Field(default=0.8, ge=0, le=1)
    topic_pass_threshold: float = Field(default=0.6, ge=0, le=1)
    max_retries_per_topic: int = Field(default=1, ge=0)
    merge_after_unit: bool = True
    eval_max_new_tokens: int = Field(default=64, gt=0)


class TrainerConfig(_Section):
    """The whole file. ``sft``/``dpo``/``generation`` are kept as mappings and validated by the interfaces dataclasses."""

    backend: BackendSection = Field(default_factory=BackendSection)
    model: ModelSection = Field(default_factory=ModelSection)
    data: DataSection = Field(default_factory=DataSection)
    sft: dict[str, Any] = Field(default_factory=dict)
    dpo: dict[str, Any] = Field(default_factory=dict)
    generation: dict[str, Any] = Field(default_factory=dict)
    pipeline: PipelineSection = Field(default_factory=PipelineSection)
    output_dir: str = "runs"

    def sft_config(self, **overrides: Any) -> SFTConfig:
        return SFTConfig.from_dict({**self.sft, **overrides}, prefix="sft.")

    def dpo_config(self, **overrides: Any) -> DPOConfig:
        return DPOConfig.from_dict({**self.dpo, **overrides}, prefix="dpo.")

    def generation_config(self, **overrides: Any) -> GenerationConfig:
        return GenerationConfig.from_dict({**self.generation, **overrides}, prefix="generation.")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False, default_flow_style=False)


# --------------------------------------------------------------------------------------------
# errors


def _format_loc(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _fields_at(loc: Sequence[int | str]) -> list[str]:
    model: type[BaseModel] = TrainerConfig
    for part in loc[:-1]:
        info = model.model_fields.get(str(part))
        ann = info.annotation if info is not None else None
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            model = ann
        else:
            return []
    return list(model.model_fields)


def _pydantic_message(err: Mapping[str, Any]) -> tuple[str, str]:
    loc = tuple(err.get("loc", ()))
    # Errors inside a union (e.g. `type: pytorch | mlx | null`) carry the member name as a loc part.
    loc = tuple(p for p in loc if p not in ("literal['pytorch','mlx']",) and not str(p).startswith("literal["))
    path = _format_loc(loc)
    kind = err.get("type", "")
    value = err.get("input")
    if kind == "extra_forbidden":
        valid = _fields_at(loc)
        close = difflib.get_close_matches(str(loc[-1]), valid, n=1, cutoff=0.6) if loc else []
        hint = f' (did you mean "{close[0]}"?)' if close else ""
        return path, f'unknown key "{path}"{hint}; valid keys: {", ".join(valid)}'
    if kind == "literal_error":
        expected = str(err.get("ctx", {}).get("expected", ""))
        allowed = [s.strip().strip("'") for s in expected.replace(" or ", ", ").split(",") if s.strip()]
        if path == "backend.type":
            allowed.append("null")
        return path, f"{path}: must be one of {', '.join(allowed)}, got {value!r}"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return path, f"{path}: expected a mapping of keys, got {value!r}"
    msg = str(err.get("msg", "invalid value"))
    return path, f"{path}: {msg[:1].lower() + msg[1:]}, got {value!r}"


def _from_validation_error(exc: ValidationError, source: str | None) -> ConfigError:
    errors = exc.errors()
    # Literal errors in `X | None` unions come twice (once per member); the literal one is the useful one.
    literal = [e for e in errors if e.get("type") == "literal_error"]
    first = literal[0] if literal else errors[0]
    path, message = _pydantic_message(first)
    more = len({_format_loc(e.get("loc", ())) for e in errors}) - 1
    if more > 0:
        message += f" (and {more} more problem{'s' if more > 1 else ''})"
    return ConfigError(message, key=path, source=source)


# --------------------------------------------------------------------------------------------
# loading


def bundled_config_text() -> str:
    return resources.files("mindprint_trainer").joinpath("configs", DEFAULT_CONFIG_NAME).read_text(encoding="utf-8")


def read_yaml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError("config file not found", source=str(p))
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{p}:{mark.line + 1}" if mark is not None else str(p)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"invalid YAML: {problem}", source=where) from None
    except UnicodeDecodeError:
        raise ConfigError("not UTF-8 text", source=str(p)) from None
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
            raise ConfigError(f"--set expects KEY=VALUE (e.g. sft.learning_rate=1e-4), got {item!r}")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r} conflicts with another --set")
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
    try:
        cfg = TrainerConfig.model_validate(dict(data))
    except ValidationError as exc:
        raise _from_validation_error(exc, source) from None
    # Validate the dataclass-backed sections now, so a typo fails before any work starts.
    try:
        cfg.sft_config()
        cfg.dpo_config()
        cfg.generation_config()
    except ConfigError as exc:
        raise ConfigError(str(exc), key=exc.key, source=source) from None
    return cfg


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
