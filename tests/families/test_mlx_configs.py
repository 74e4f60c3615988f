"""MLX computes what transformers computes from the config as the Hub ships it; what it cannot do is refused,
and every refusal is shown to be real (forcing the load gives different logits)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mindprint_interfaces import ConfigError
from mindprint_interfaces.architectures import FAMILIES

pytestmark = [pytest.mark.torch, pytest.mark.mlx]

IDS = [[5, 17, 42, 99, 7, 250, 3, 64, 128, 11, 300, 1, 77, 66]]


def torch_logprobs(path: Path) -> np.ndarray:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32).eval()
    with torch.no_grad():
        return torch.log_softmax(model(torch.tensor(IDS)).logits, -1).numpy()


def mlx_logprobs(module: Any) -> np.ndarray:
    import mlx.core as mx

    logits = module(mx.array(IDS)).astype(mx.float32)
    return np.array(logits - mx.logsumexp(logits, axis=-1, keepdims=True))


def load_mlx(path: Path) -> Any:
    import mlx.core as mx

    from mindprint_mlx.loading import load_hf_directory

    return load_hf_directory(path, None, mx.float32)[0]


def forced_mlx(path: Path) -> Any:
    """What mlx-lm computes when the refusal is bypassed (our translation, no check; weights it has no place for
    are dropped, as its loader does with ``strict=False``)."""
    from mlx_lm.utils import load_model

    from mindprint_mlx.loading import apply_windows, read_hf_config, translate_config, window_plan

    config = read_hf_config(path)
    model, _ = load_model(path, strict=False, model_config=translate_config(config))
    apply_windows(model, window_plan(config))
    return model


def edit_config(path: Path, **changes: Any) -> None:
    config = json.loads((path / "config.json").read_text())
    for key, value in changes.items():
        if value is ...:
            config.pop(key, None)
        else:
            config[key] = value
    (path / "config.json").write_text(json.dumps(config))


def test_qwen25_hub_config_is_not_refused(tmp_path: Path) -> None:
    """Qwen2.5's config.json: top-level rope_theta, ``sliding_window: 131072, use_sliding_window: false``."""
    from tiny_model import build_tiny_family

    path = build_tiny_family("qwen2", tmp_path / "q")
    edit_config(path, rope_parameters=..., layer_types=..., rope_theta=5000.0, rope_scaling=None,
                sliding_window=131072, use_sliding_window=False, max_window_layers=21)
    assert np.abs(mlx_logprobs(load_mlx(path)) - torch_logprobs(path)).max() < 1e-4


@pytest.mark.parametrize("family, changes", [
    ("mistral", {}),  # window 4 < 14 tokens, every layer
    ("gemma2", {"sliding_window": 4}),  # window on the sliding layers of layer_types only
    ("qwen2", {"sliding_window": 4, "use_sliding_window": True, "layer_types": ["full_attention", "sliding_attention"]}),
])
def test_window_shorter_than_the_sequence_is_applied(tmp_path: Path, family: str, changes: dict[str, Any]) -> None:
    from mlx_lm.utils import load_model
    from tiny_model import build_tiny_family

    from mindprint_mlx.loading import translate_config

    path = build_tiny_family(family, tmp_path / family)
    edit_config(path, **changes)
    expected = torch_logprobs(path)
    assert np.abs(mlx_logprobs(load_mlx(path)) - expected).max() < 1e-4
    plain, _ = load_model(path, model_config=translate_config(json.loads((path / "config.json").read_text())))
    assert np.abs(mlx_logprobs(plain) - expected).max() > 1e-2, "mlx-lm alone ignores the window"


def test_gemma2_untied_head_is_refused_and_really_differs(tmp_path: Path) -> None:
    from tiny_model import build_tiny_family

    path = build_tiny_family("gemma2", tmp_path / "g", config_overrides={"tie_word_embeddings": False})
    with pytest.raises(ConfigError, match="tie_word_embeddings=False"):
        load_mlx(path)
    assert np.abs(mlx_logprobs(forced_mlx(path)) - torch_logprobs(path)).max() > 1e-2


def test_gemma3_layer_types_without_period_is_refused(tmp_path: Path) -> None:
    from tiny_model import build_tiny_family

    path = build_tiny_family("gemma3_text", tmp_path / "g3", config_overrides={
        "num_hidden_layers": 3, "layer_types": ["full_attention", "sliding_attention", "sliding_attention"]})
    with pytest.raises(ConfigError, match="layer_types"):
        load_mlx(path)
    # forced to the nearest pattern mlx-lm can express (every 2nd layer full): different logits
    from mlx_lm.utils import load_model

    from mindprint_mlx.loading import read_hf_config, translate_config

    config = read_hf_config(path)
    overrides = translate_config({**config, "layer_types": None}) | {"sliding_window_pattern": 2}
    model, _ = load_model(path, model_config=overrides)
    assert np.abs(mlx_logprobs(model) - torch_logprobs(path)).max() > 1e-2


def test_gelu_llama_is_refused_and_really_differs(tmp_path: Path) -> None:
    from tiny_model import build_tiny_family

    path = build_tiny_family("llama", tmp_path / "l", config_overrides={"hidden_act": "gelu"})
    with pytest.raises(ConfigError, match="hidden_act='gelu'"):
        load_mlx(path)
    assert np.abs(mlx_logprobs(forced_mlx(path)) - torch_logprobs(path)).max() > 1e-2


def hub_layout(config: dict[str, Any]) -> dict[str, Any]:
    """The older Hub layout of a transformers-5 config: top-level rope_theta / rope_scaling (gemma3:
    rope_local_base_freq), no rope_parameters."""
    out = {k: v for k, v in config.items() if k != "rope_parameters"}
    rope = config.get("rope_parameters") or {}
    if isinstance(rope.get("full_attention"), dict):
        out["rope_local_base_freq"] = rope["sliding_attention"]["rope_theta"]
        rope = rope["full_attention"]
    out["rope_theta"] = rope.get("rope_theta", 10000.0)
    rope_type = rope.get("rope_type", "default")
    out["rope_scaling"] = None if rope_type == "default" else {
        k: v for k, v in rope.items() if k not in ("rope_theta", "partial_rotary_factor")}
    if "partial_rotary_factor" in rope:
        out["partial_rotary_factor"] = rope["partial_rotary_factor"]
    return out


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_hub_layout_config_gives_the_same_logits(tmp_path: Path, family: str) -> None:
    """Every family from its config.json in the older Hub layout: transformers reads it as the transformers-5
    layout (the rewrite is faithful), and MLX computes the same log-probs."""
    from tiny_model import build_tiny_family

    path = build_tiny_family(family, tmp_path / family)
    expected = torch_logprobs(path)
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps(hub_layout(config)))
    assert "rope_parameters" not in json.loads((path / "config.json").read_text())
    assert np.abs(torch_logprobs(path) - expected).max() < 1e-5
    assert np.abs(mlx_logprobs(load_mlx(path)) - expected).max() < 1e-4


def test_the_window_mask_checks_the_attention_call_layout() -> None:
    """The window is applied by wrapping attention's __call__(x, mask, cache): every mlx-lm family we mask passes
    the layout check, and an attention called otherwise is refused by name instead of running without its window."""
    import importlib

    import mlx.nn as nn
    import pytest

    from mindprint_interfaces import ConfigError
    from mindprint_interfaces.architectures import FAMILIES
    from mindprint_mlx._compat.mlx_lm import attention_call_problem
    from mindprint_mlx.loading import apply_windows

    masked = [f.model_type for f in FAMILIES.values() if f.mlx_window == "mask"]
    assert masked
    for model_type in masked:
        from mlx_lm.utils import MODEL_REMAPPING

        module = importlib.import_module(f"mlx_lm.models.{MODEL_REMAPPING.get(model_type, model_type)}")
        assert attention_call_problem(module.Attention) is None, model_type

    class OtherOrder(nn.Module):
        def __call__(self, x: Any, cache: Any = None, mask: Any = None) -> Any:
            return x

    class Layer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.self_attn = OtherOrder()

    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = [Layer(), Layer()]

    with pytest.raises(ConfigError, match=r"sliding_window=4 on layer 1: .*takes \(x, cache, mask\)") as info:
        apply_windows(Model(), (4, [1]))
    assert info.value.key == "sliding_window"
