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


def translate_config(config: dict[str, Any]) -> dict[str, Any]:
    """Overrides for ``mlx_lm`` (``model_config=``) that restore fields transformers 5 moved."""
    out: dict[str, Any] = {}
    rope = config.get("rope_parameters")
    if isinstance(rope, dict):
        if "rope_theta" in rope:
            out["rope_theta"] = float(rope["rope_theta"])
        rope_type = rope.get("rope_type", rope.get("type", "default"))
        if rope_type not in (None, "default"):
            out["rope_scaling"] = {k: v for k, v in rope.items() if k not in ("rope_theta", "type")} | {
                "rope_type": rope_type}
        if "partial_rotary_factor" in rope:
            out["partial_rotary_factor"] = rope["partial_rotary_factor"]
    elif "rope_theta" in config:
        out["rope_theta"] = float(config["rope_theta"])
    return out


def check_supported(config: dict[str, Any], overrides: dict[str, Any]) -> None:
    """Raise ConfigError when mlx-lm's architecture would silently ignore a maths-relevant field."""
    merged = {**config, **overrides}
    args_class = mlx_lm_compat.model_args_class(merged)
    accepted = set(inspect.signature(args_class).parameters)
    model_type = merged.get("model_type", "?")
    problems = []
    for key, neutral in NEUTRAL_VALUES.items():
        if key in merged and key not in accepted and merged[key] != neutral and merged[key] is not None:
            problems.append(f"{key}={merged[key]!r}")
    for key in REQUIRED_FIELDS:
        if key in merged and key not in accepted:
            problems.append(f"{key}={merged[key]!r}")
    if problems:
        raise ConfigError(
            f"mlx-lm's {model_type!r} implementation would ignore {', '.join(problems)} and compute different "
            "logits than transformers; this model is not supported by the MLX backend", key="model")


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
    if model.parameters():
        model.set_dtype(dtype)
    tok_dir = tokenizer_path or model_path
    tokenizer = load_tokenizer(tok_dir, eos_token_ids=full_config.get("eos_token_id"))
    mx.eval(model.parameters())
    return model, tokenizer, {**config, **overrides}
