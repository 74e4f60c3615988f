"""Adapters: PEFT layout by default, mlx-lm layout on request, exact conversion, compatibility checks."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlx.core as mx
import numpy as np
import pytest
from safetensors.numpy import load_file

from mindprint_interfaces import AdapterConfig, AdapterFormatError
from mindprint_mlx.adapters import convert_adapter, read_adapter
from mindprint_mlx.lora import lora_modules

pytestmark = pytest.mark.mlx

IDS = [[5, 17, 42, 99, 7, 250, 3, 64]]


def logits(model: Any) -> np.ndarray:
    return np.array(model.forward(IDS).logits)


def randomise(model: Any, seed: int = 1) -> None:
    """Give the adapter non-zero B so it changes the logits (a fresh one is a no-op, as in PEFT)."""
    rng = np.random.default_rng(seed)
    for m in lora_modules(model.module).values():
        m.lora_b = mx.array(rng.normal(0, 0.2, size=m.lora_b.shape).astype(np.float32))
    mx.eval(model.module.parameters())


def test_fresh_adapter_is_a_no_op_and_peft_initialised(tiny: Any) -> None:
    before = logits(tiny)
    tiny.add_adapter(AdapterConfig(r=4, alpha=8))
    assert np.abs(logits(tiny) - before).max() == 0.0
    mods = lora_modules(tiny.module)
    assert len(mods) == 2 * 4
    for m in mods.values():
        assert m.scale == 2.0  # alpha / r
        assert float(mx.abs(m.lora_b).max()) == 0.0
        bound = 1 / np.sqrt(m.lora_a.shape[0])
        assert 0 < float(mx.abs(m.lora_a).max()) <= bound
    trainable = {k for k, _ in __import__("mlx.utils", fromlist=["tree_flatten"]).tree_flatten(
        tiny.module.trainable_parameters())}
    assert trainable and all(k.endswith(("lora_a", "lora_b")) for k in trainable)


def test_peft_layout_on_disk(tiny: Any, tmp_path: Path) -> None:
    tiny.add_adapter(AdapterConfig(r=4, alpha=8, target_modules=("q_proj", "v_proj")))
    randomise(tiny)
    out = tiny.save_adapter(tmp_path / "a")
    cfg = json.loads((out / "adapter_config.json").read_text())
    assert cfg["r"] == 4 and cfg["lora_alpha"] == 8 and cfg["target_modules"] == ["q_proj", "v_proj"]
    tensors = load_file(str(out / "adapter_model.safetensors"))
    a = tensors["base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"]
    b = tensors["base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"]
    assert a.shape == (4, 64) and b.shape == (64, 4)  # (r, in), (out, r)
    assert tensors["base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight"].shape == (32, 4)  # GQA
    m = lora_modules(tiny.module)[(0, "self_attn.q_proj")]
    assert np.array_equal(a, np.array(m.lora_a).T) and np.array_equal(b, np.array(m.lora_b).T)


@pytest.mark.parametrize("fmt", ["peft", "mlx"])
def test_round_trip_gives_identical_logits(load_tiny: Callable[[], Any], tmp_path: Path, fmt: str) -> None:
    src = load_tiny()
    src.add_adapter(AdapterConfig(r=4, alpha=16, target_modules=("q_proj", "k_proj", "v_proj", "o_proj", "down_proj")))
    randomise(src)
    expected = logits(src)
    path = src.save_adapter(tmp_path / fmt, format=fmt)
    dst = load_tiny()
    dst.load_adapter(path)
    assert dst.adapter_config is not None and dst.adapter_config.scale == 4.0
    assert np.abs(logits(dst) - expected).max() == 0.0


def test_conversion_is_exact_both_ways(tiny: Any, tmp_path: Path) -> None:
    tiny.add_adapter(AdapterConfig(r=2, alpha=6))
    randomise(tiny)
    peft = tiny.save_adapter(tmp_path / "peft")
    mlx_dir = convert_adapter(peft, tmp_path / "mlx", to="mlx")
    back = convert_adapter(mlx_dir, tmp_path / "peft2", to="peft")
    mcfg = json.loads((mlx_dir / "adapter_config.json").read_text())
    assert mcfg["lora_parameters"]["scale"] == 3.0 and mcfg["num_layers"] == 2
    t1 = load_file(str(peft / "adapter_model.safetensors"))
    t2 = load_file(str(back / "adapter_model.safetensors"))
    assert t1.keys() == t2.keys() and all(np.array_equal(t1[k], t2[k]) for k in t1)
    tm = load_file(str(mlx_dir / "adapters.safetensors"))
    assert np.array_equal(tm["model.layers.1.self_attn.o_proj.lora_a"],
                          t1["base_model.model.model.layers.1.self_attn.o_proj.lora_A.weight"].T)


def test_mlx_layout_loads_in_mlx_lm_itself(tiny: Any, tiny_model_dir: Path, tmp_path: Path) -> None:
    from mlx_lm.tuner.utils import load_adapters

    tiny.add_adapter(AdapterConfig(r=4, alpha=8))
    randomise(tiny)
    path = tiny.save_adapter(tmp_path / "m", format="mlx")
    plain = load_tiny_plain(tiny_model_dir)
    load_adapters(plain.module, str(path))
    assert np.abs(logits(plain) - logits(tiny)).max() < 1e-6


def load_tiny_plain(path: Path) -> Any:
    from mindprint_interfaces import BackendConfig
    from mindprint_mlx import MLXBackend

    return MLXBackend(BackendConfig("mlx", device="cpu")).load_model(path)


def test_peft_adapter_loads_with_plain_peft_on_torch(tiny: Any, tiny_model_dir: Path, tmp_path: Path) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    tiny.add_adapter(AdapterConfig(r=4, alpha=8, target_modules=("q_proj", "v_proj", "gate_proj")))
    randomise(tiny)
    path = tiny.save_adapter(tmp_path / "p")
    base = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32)
    peft_model = PeftModel.from_pretrained(base, str(path))
    peft_model.eval()
    with torch.no_grad():
        theirs = peft_model(torch.tensor(IDS)).logits.numpy()
    assert np.abs(theirs - logits(tiny)).max() < 1e-4


def test_explicit_layers(load_tiny: Callable[[], Any], tmp_path: Path) -> None:
    model = load_tiny()
    model.add_adapter(AdapterConfig(r=2, alpha=4, layers=(0,)))
    assert {layer for layer, _ in lora_modules(model.module)} == {0}
    randomise(model)
    path = model.save_adapter(tmp_path / "l0")
    assert json.loads((path / "adapter_config.json").read_text())["layers_to_transform"] == [0]
    with pytest.raises(AdapterFormatError, match="last N layers"):
        model.save_adapter(tmp_path / "l0-mlx", format="mlx")
    other = load_tiny()
    other.load_adapter(path)
    assert np.abs(logits(other) - logits(model)).max() == 0.0
    with pytest.raises(AdapterFormatError, match="do not exist"):
        load_tiny().add_adapter(AdapterConfig(layers=(5,)))


def test_incompatible_adapter_names_the_mismatch(tiny: Any, tmp_path: Path) -> None:
    tiny.add_adapter(AdapterConfig(r=2, alpha=4))
    path = tiny.save_adapter(tmp_path / "a")
    config, weights = read_adapter(path)
    from mindprint_mlx.adapters import write_adapter

    bad = {(3 if layer == 1 else layer, mod): (a, b) for (layer, mod), (a, b) in weights.items()}
    bad[(0, "self_attn.q_proj")] = (np.zeros((2, 32), np.float32), np.zeros((64, 2), np.float32))
    write_adapter(tmp_path / "bad", config.replace(layers=None), bad)
    with pytest.raises(AdapterFormatError) as info:
        tiny.load_adapter(tmp_path / "bad")
    assert "layer 3 does not exist (the base model has 2 layers)" in str(info.value)
    assert "adapter expects (in=32, out=64), the base model has (in=64, out=64)" in str(info.value)


def test_unreadable_adapters(tiny: Any, tmp_path: Path) -> None:
    with pytest.raises(AdapterFormatError, match="not found"):
        tiny.load_adapter(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(AdapterFormatError, match="neither"):
        tiny.load_adapter(tmp_path / "empty")
    with pytest.raises(AdapterFormatError, match="no adapter"):
        tiny.save_adapter(tmp_path / "x")
    tiny.add_adapter(AdapterConfig())
    with pytest.raises(AdapterFormatError, match="unknown adapter format"):
        tiny.save_adapter(tmp_path / "x", format="gguf")


def test_save_is_atomic(tiny: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tiny.add_adapter(AdapterConfig(r=2, alpha=4))
    path = tiny.save_adapter(tmp_path / "a")
    before = (path / "adapter_model.safetensors").read_bytes()
    randomise(tiny)
    import mindprint_kit.adapter_files as adapters  # the writer every backend shares

    def boom(*args: Any, **kwargs: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(adapters, "save_file", boom)
    with pytest.raises(OSError, match="disk full"):
        tiny.save_adapter(path)
    assert (path / "adapter_model.safetensors").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]
