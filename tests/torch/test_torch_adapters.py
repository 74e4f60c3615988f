from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mindprint_interfaces import AdapterConfig, AdapterFormatError
from mindprint_interfaces.adapter_format import MLX_WEIGHTS, PEFT_CONFIG, PEFT_WEIGHTS
from mindprint_torch import PyTorchModel, TorchBackend, convert_adapter

pytestmark = pytest.mark.torch

PROBE = [[5, 6, 7, 8, 9, 10, 11, 12], [20, 21, 22, 23, 24, 25, 26, 27]]


def _with_random_adapter(model: PyTorchModel, layers: tuple[int, ...] | None = None) -> PyTorchModel:
    """An adapter with non-zero B, so it actually changes the logits."""
    model_cfg = AdapterConfig(r=4, alpha=8, target_modules=("q_proj", "v_proj", "o_proj"), layers=layers)
    from mindprint_torch.adapters import add_adapter

    add_adapter(model, model_cfg)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.hf_model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
    return model


def _logits(model: PyTorchModel) -> torch.Tensor:
    return model.forward(PROBE).logits


def test_peft_save_loads_with_plain_peft(tiny: PyTorchModel, tiny_model_dir: Path, tmp_path: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = _with_random_adapter(tiny)
    before = _logits(model)
    base_only = model.hf_model.get_base_model()
    out = model.save_adapter(tmp_path / "peft")
    assert (out / PEFT_WEIGHTS).is_file() and (out / PEFT_CONFIG).is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp dirs left behind
    keys = load_file(str(out / PEFT_WEIGHTS))
    assert "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight" in keys
    base = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32)
    plain = PeftModel.from_pretrained(base, str(out)).eval()
    with torch.no_grad():
        got = plain(input_ids=torch.tensor(PROBE)).logits
    assert torch.allclose(got, before, atol=1e-5)
    assert base_only is not None


def test_adapter_changes_logits_and_reload_reproduces_them(load_tiny: Callable[[], PyTorchModel], tmp_path: Path) -> None:
    model = _with_random_adapter(load_tiny())
    plain = _logits(load_tiny())
    before = _logits(model)
    assert (before - plain).abs().max() > 1e-2  # the adapter matters, so the comparisons below mean something
    for fmt in ("peft", "mlx"):
        path = model.save_adapter(tmp_path / fmt, format=fmt)
        fresh = load_tiny()
        fresh.load_adapter(path)
        assert fresh.has_adapter()
        assert torch.allclose(_logits(fresh), before, atol=1e-5), fmt


def test_mlx_layout_is_exact_transpose(tiny: PyTorchModel, tmp_path: Path) -> None:
    model = _with_random_adapter(tiny)
    peft_dir = model.save_adapter(tmp_path / "peft")
    mlx_dir = model.save_adapter(tmp_path / "mlx", format="mlx")
    peft_w = load_file(str(peft_dir / PEFT_WEIGHTS))
    mlx_w = load_file(str(mlx_dir / MLX_WEIGHTS))
    a = peft_w["base_model.model.model.layers.1.self_attn.v_proj.lora_A.weight"]
    b = peft_w["base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight"]
    assert torch.equal(mlx_w["model.layers.1.self_attn.v_proj.lora_a"], a.T)  # (in, r)
    assert torch.equal(mlx_w["model.layers.1.self_attn.v_proj.lora_b"], b.T)  # (r, out)
    cfg = json.loads((mlx_dir / PEFT_CONFIG).read_text())
    assert cfg["lora_parameters"]["rank"] == 4 and cfg["lora_parameters"]["scale"] == 2.0
    assert cfg["num_layers"] == 2
    # convert both ways: bit-exact round trip
    back = convert_adapter(mlx_dir, tmp_path / "back", to="peft")
    round_trip = load_file(str(back / PEFT_WEIGHTS))
    assert set(round_trip) == set(peft_w)
    assert all(torch.equal(round_trip[k], peft_w[k]) for k in peft_w)
    again = convert_adapter(back, tmp_path / "again", to="mlx")
    assert all(torch.equal(load_file(str(again / MLX_WEIGHTS))[k], v) for k, v in mlx_w.items())


def test_partial_layers_and_mlx_restriction(load_tiny: Callable[[], PyTorchModel], tmp_path: Path) -> None:
    last = _with_random_adapter(load_tiny(), layers=(1,))
    path = last.save_adapter(tmp_path / "last", format="mlx")
    assert json.loads((path / PEFT_CONFIG).read_text())["num_layers"] == 1
    first = _with_random_adapter(load_tiny(), layers=(0,))
    with pytest.raises(AdapterFormatError, match="last N layers"):
        first.save_adapter(tmp_path / "first", format="mlx")
    fresh = load_tiny()
    fresh.load_adapter(path)
    assert torch.allclose(_logits(fresh), _logits(last), atol=1e-5)


def test_incompatible_adapter_says_what_does_not_match(backend: TorchBackend, tiny: PyTorchModel,
                                                        tmp_path: Path) -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
    from tiny_model import build_tiny_llama

    other_dir = build_tiny_llama(tmp_path / "wide", num_layers=3, hidden_size=32)
    other = _with_random_adapter(backend.load_model(other_dir))
    path = other.save_adapter(tmp_path / "wide-adapter")
    with pytest.raises(AdapterFormatError) as info:
        tiny.load_adapter(path)
    message = str(info.value)
    assert "layer 2 does not exist (the base model has 2 layers)" in message
    assert "adapter expects (in=32, out=32), the base model has (in=64, out=64)" in message
    assert not tiny.has_adapter()  # a refused load leaves the model as it was


def test_unreadable_adapter_directories(tiny: PyTorchModel, tmp_path: Path) -> None:
    with pytest.raises(AdapterFormatError, match="not found"):
        tiny.load_adapter(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(AdapterFormatError, match="neither"):
        tiny.load_adapter(tmp_path / "empty")
    with pytest.raises(AdapterFormatError, match="no adapter"):
        tiny.save_adapter(tmp_path / "x")


def test_failed_save_keeps_previous_adapter(tiny: PyTorchModel, tmp_path: Path) -> None:
    model = _with_random_adapter(tiny)
    path = model.save_adapter(tmp_path / "a")
    before = (path / PEFT_WEIGHTS).read_bytes()
    with pytest.raises(AdapterFormatError):
        model.save_adapter(path, format="gguf")
    model.hf_model.peft_config["default"].layers_to_transform = [0]  # makes the mlx writer refuse mid-save
    with pytest.raises(AdapterFormatError):
        model.save_adapter(path, format="mlx")
    assert (path / PEFT_WEIGHTS).read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
