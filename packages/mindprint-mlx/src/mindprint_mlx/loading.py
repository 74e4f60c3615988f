"""Load an HF model directory with mlx-lm, translating every config field that changes the maths.

mlx-lm builds its ``ModelArgs`` with ``from_dict``, which silently drops keys it does not know,
and transformers 5 moved rope settings under ``rope_parameters``. A dropped ``rope_theta`` does
not fail: it gives different logits. :func:`translate_config` maps the new places back to the
names mlx-lm reads, and :func:`check_supported` refuses configs whose maths mlx-lm would ignore.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx.nn as nn
from mlx_lm.tokenizer_utils import TokenizerWrapper
from mlx_lm.utils import load_model, load_tokenizer

from mindprint_interfaces import ConfigError
from mindprint_interfaces.architectures import family

from ._compat import mlx_lm as mlx_lm_compat

# Fields that change the forward pass, with the value at which ignoring them is harmless.
NEUTRAL_VALUES: dict[str, Any] = {
    "hidden_act": "silu",
    "pretraining_tp": 1,
    "attention_bias": False,
    "mlp_bias": False,
    "partial_rotary_factor": 1.0,
    "rope_scaling": None,
    "attn_logit_softcapping": None,
    "final_logit_softcapping": None,
    "sliding_window": None,
    "use_sliding_window": False,
    "residual_multiplier": 1.0,
    "embedding_multiplier": 1.0,
    "logits_scaling": 1.0,
    "attention_multiplier": None,
}
# Fields that must reach ModelArgs whenever present (no neutral value).
REQUIRED_FIELDS = ("rms_norm_eps", "rope_theta", "tie_word_embeddings", "head_dim", "num_key_value_heads")


def read_hf_config(model_dir: Path) -> dict[str, Any]:
    path = model_dir / "config.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read model config: {exc}", key="model") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: model config must be a JSON object", key="model")
    return data


def _rope_overrides(rope: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "rope_theta" in rope:
        out["rope_theta"] = float(rope["rope_theta"])
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type not in (None, "default"):
        out["rope_scaling"] = {k: v for k, v in rope.items() if k not in ("rope_theta", "type")} | {
            "rope_type": rope_type}
    if "partial_rotary_factor" in rope:
        out["partial_rotary_factor"] = rope["partial_rotary_factor"]
    return out


def _sliding_pattern(layer_types: list[Any]) -> int | None:
    """mlx-lm gemma3's ``sliding_window_pattern`` p (layer i is full iff (i + 1) % p == 0) for ``layer_types``."""
    full = [i for i, t in enumerate(layer_types) if t == "full_attention"]
    for p in range(1, len(layer_types) + 1):
        if full == [i for i in range(len(layer_types)) if (i + 1) % p == 0]:
            return p
    return None


def translate_config(config: dict[str, Any]) -> dict[str, Any]:
    """Overrides for ``mlx_lm`` (``model_config=``) that restore fields transformers 5 moved.

    Both layouts: transformers 5's ``rope_parameters`` (per layer type for gemma3) and the older Hub
    layout with top-level ``rope_theta`` / ``rope_scaling`` (which mlx-lm reads as they are).
    """
    out: dict[str, Any] = {}
    rope = config.get("rope_parameters")
    if isinstance(rope, dict) and isinstance(rope.get("full_attention"), dict):
        out.update(_rope_overrides(rope["full_attention"]))
        local = rope.get("sliding_attention")
        if isinstance(local, dict) and "rope_theta" in local:
            out["rope_local_base_freq"] = float(local["rope_theta"])
    elif isinstance(rope, dict):
        out.update(_rope_overrides(rope))
    elif "rope_theta" in config:
        out["rope_theta"] = float(config["rope_theta"])
    fam = family(config.get("model_type"))
    layer_types = config.get("layer_types")
    if fam is not None and fam.mlx_window == "native" and isinstance(layer_types, list):
        pattern = _sliding_pattern(layer_types)
        if pattern is None:
            raise ConfigError(f"layer_types {layer_types} has no period mlx-lm's {fam.model_type} can express "
                              "(full attention on every p-th layer); not supported by the MLX backend", key="model")
        out["sliding_window_pattern"] = pattern
    return out


def window_plan(config: dict[str, Any]) -> tuple[int, list[int]] | None:
    """(window, sliding layer indices) mindprint-mlx must mask itself (mlx-lm ignores the window), or None."""
    fam = family(config.get("model_type"))
    window = config.get("sliding_window")
    if fam is None or fam.mlx_window != "mask" or window is None:
        return None
    if config.get("use_sliding_window") is False:
        return None  # Qwen2: transformers discards the window
    layer_types = config.get("layer_types")
    layers = int(config.get("num_hidden_layers", 0))
    if isinstance(layer_types, list):
        sliding = [i for i, t in enumerate(layer_types) if t == "sliding_attention"]
    elif fam.model_type == "qwen2":  # older Hub layout: layers from max_window_layers on slide
        sliding = list(range(int(config.get("max_window_layers", layers)), layers))
    else:
        sliding = list(range(layers))
    return (int(window), sliding) if sliding else None


def check_supported(config: dict[str, Any], overrides: dict[str, Any]) -> None:
    """Raise ConfigError when mlx-lm's architecture would silently ignore a maths-relevant field."""
    merged = {**config, **overrides}
    args_class = mlx_lm_compat.model_args_class(merged)
    accepted = set(inspect.signature(args_class).parameters)
    model_type = merged.get("model_type", "?")
    fam = family(model_type)
    handled: set[str] = set()
    if fam is not None and fam.mlx_window == "mask":
        handled = {"sliding_window", "use_sliding_window", "layer_types"}  # window_plan masks them
    elif fam is not None and fam.mlx_window == "native":
        handled = {"layer_types"}  # translate_config maps it
    fixed = dict(fam.mlx_fixed) if fam is not None else {}
    problems = []
    for key, neutral in NEUTRAL_VALUES.items():
        if key in handled or (key in fixed and merged.get(key) == fixed[key]):
            continue
        if key in merged and key not in accepted and merged[key] != neutral and merged[key] is not None:
            problems.append(f"{key}={merged[key]!r}")
    for key in REQUIRED_FIELDS:
        if key in fixed and merged.get(key) == fixed[key]:
            continue
        if key in merged and key not in accepted:
            problems.append(f"{key}={merged[key]!r}")
    if problems:
        raise ConfigError(
            f"mlx-lm's {model_type!r} implementation would ignore {', '.join(problems)} and compute different "
            "logits than transformers; this model is not supported by the MLX backend", key="model")


_WINDOWED: dict[type, type] = {}


def _window_mask(length: int, offset: int, window: int, mask: Any) -> Any:
    """Causal mask of ``length`` queries at ``offset`` over ``offset + length`` keys, each seeing ``window`` keys."""
    rows = mx.arange(offset, offset + length)[:, None]
    cols = mx.arange(offset + length)[None]
    allowed = (cols <= rows) & (rows - cols < window)
    if isinstance(mask, mx.array):
        if mask.dtype == mx.bool_:
            return mask & allowed
        return mask + mx.where(allowed, 0.0, -mx.inf).astype(mask.dtype)
    return allowed


def _windowed(cls: type) -> type:
    """A subclass of the attention class ``cls`` that masks keys outside its ``mindprint_window``."""
    if cls not in _WINDOWED:
        def __call__(self: Any, x: Any, mask: Any = None, cache: Any = None) -> Any:
            length, offset = x.shape[1], (cache.offset if cache is not None else 0)
            if offset + length > self.mindprint_window:
                mask = _window_mask(length, offset, self.mindprint_window, mask)
            return cls.__call__(self, x, mask, cache)

        _WINDOWED[cls] = type(f"Windowed{cls.__name__}", (cls,), {"__call__": __call__})
    return _WINDOWED[cls]


def apply_windows(model: nn.Module, plan: tuple[int, list[int]] | None) -> None:
    """Give the sliding layers' attention the window mask transformers applies (mlx-lm drops the window)."""
    if plan is None:
        return
    window, layers = plan
    for i in layers:
        attention = model.layers[i].self_attn
        problem = mlx_lm_compat.attention_call_problem(type(attention))
        if problem is not None:
            raise ConfigError(f"sliding_window={window} on layer {i}: {problem} with this mlx-lm; the MLX backend "
                              "would attend beyond the window transformers applies", key="sliding_window")
        attention.__class__ = _windowed(type(attention))
        attention.mindprint_window = window


def load_hf_directory(model_path: Path, tokenizer_path: Path | None, dtype: Any) -> tuple[nn.Module, TokenizerWrapper, dict[str, Any]]:
    """Load weights + tokenizer from local HF directories (never the hub) in ``dtype``."""
    for label, p in (("model", model_path), ("tokenizer", tokenizer_path)):
        if p is not None and not p.is_dir():
            raise ConfigError(f"{label} directory not found: {p} (the MLX backend loads local HF directories only)",
                              key=label)
    if not (model_path / "config.json").is_file():
        raise ConfigError(f"{model_path}: config.json missing (not an HF model directory)", key="model")
    config = read_hf_config(model_path)
    overrides = translate_config(config)
    check_supported(config, overrides)
    model, full_config = load_model(model_path, model_config=overrides)
    apply_windows(model, window_plan(config))
    if model.parameters():
        model.set_dtype(dtype)
    tok_dir = tokenizer_path or model_path
    tokenizer = load_tokenizer(tok_dir, eos_token_ids=full_config.get("eos_token_id"))
    mx.eval(model.parameters())
    return model, tokenizer, {**config, **overrides}
