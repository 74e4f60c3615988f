"""Where do the two backends diverge? Used by the parity tests to make failures actionable.

Compares the HF config with what the MLX model actually runs with (the usual cause: a
config field mlx-lm dropped or read from the wrong place), then hidden states layer by
layer, then the first diverging logit position.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def _mlx_args(mlx_model: Any) -> dict[str, Any]:
    args = getattr(mlx_model.module, "args", None)
    return dict(vars(args)) if args is not None else {}


def config_differences(torch_model: Any, mlx_model: Any) -> list[str]:
    hf = torch_model.base_model.config
    args = _mlx_args(mlx_model)
    rope = getattr(hf, "rope_parameters", None) or {}
    expected = {
        "rope_theta": rope.get("rope_theta", getattr(hf, "rope_theta", None)),
        "rms_norm_eps": getattr(hf, "rms_norm_eps", None),
        "tie_word_embeddings": getattr(hf, "tie_word_embeddings", None),
        "num_key_value_heads": getattr(hf, "num_key_value_heads", None),
        "head_dim": getattr(hf, "head_dim", None),
        "attention_bias": getattr(hf, "attention_bias", None),
        "mlp_bias": getattr(hf, "mlp_bias", None),
        "hidden_act": getattr(hf, "hidden_act", None),
    }
    out = []
    for key, value in expected.items():
        if key in args and value is not None and args[key] != value:
            out.append(f"config {key}: torch={value!r} mlx={args[key]!r}")
    return out


def hidden_state_differences(torch_model: Any, mlx_model: Any, ids: Sequence[int]) -> list[str]:
    import mlx.core as mx
    import torch

    with torch.no_grad():
        out = torch_model.base_model(torch.tensor([list(ids)]), output_hidden_states=True)
    t_states = [h[0].float().numpy() for h in out.hidden_states]
    inner = mlx_model.module.model
    h = inner.embed_tokens(mx.array([list(ids)]))
    m_states = [np.array(h[0])]
    try:
        from mlx_lm.models.base import create_attention_mask

        mask = create_attention_mask(h, None)
    except Exception as exc:  # diagnostics must not hide the original failure
        return [f"could not build MLX attention mask for layer diagnostics: {exc}"]
    for layer in inner.layers:
        h = layer(h, mask, None)
        m_states.append(np.array(h[0]))
    report = []
    for i, (a, b) in enumerate(zip(t_states, m_states)):
        label = "embeddings" if i == 0 else f"after layer {i - 1}"
        diff = float(np.max(np.abs(a - b))) if a.shape == b.shape else float("inf")
        report.append(f"{label}: max|diff|={diff:.3e}")
    return report


def first_divergence(a: Sequence[float], b: Sequence[float], tol: float) -> str:
    diff = np.abs(np.asarray(a) - np.asarray(b))
    worst = int(np.argmax(diff))
    return f"max|diff|={diff[worst]:.3e} at vocab id {worst} (tolerance {tol})"


def explain(torch_model: Any, mlx_model: Any, ids: Sequence[int]) -> str:
    lines = config_differences(torch_model, mlx_model)
    lines += hidden_state_differences(torch_model, mlx_model, ids)
    return "\n".join(lines)
