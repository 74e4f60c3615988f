"""save_pretrained: merged HF safetensors that transformers loads with the same logits; verification fires."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import mindprint_mlx.merge as merge
from mindprint_interfaces import AdapterConfig, MergeVerificationError

from .test_mlx_adapters import IDS, logits, randomise

pytestmark = pytest.mark.mlx


def test_merged_model_loads_in_transformers_with_same_logits(tiny: Any, tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tiny.add_adapter(AdapterConfig(r=4, alpha=8, target_modules=("q_proj", "v_proj", "up_proj")))
    randomise(tiny)
    expected = logits(tiny)
    out = tiny.save_pretrained(tmp_path / "merged")
    assert (out / "model.safetensors").is_file() and (out / "config.json").is_file()
    assert json.loads((out / "config.json").read_text())["rope_parameters"]["rope_theta"] == 5000.0
    hf = AutoModelForCausalLM.from_pretrained(str(out), dtype=torch.float32)
    with torch.no_grad():
        theirs = hf(torch.tensor(IDS)).logits.numpy()
    assert np.abs(theirs - expected).max() < 1e-4
    tok = AutoTokenizer.from_pretrained(str(out))
    assert tok.encode("Hello there") == tiny.tokenizer.encode("Hello there")
    assert tiny.has_adapter()  # the live model keeps its adapter; the merge worked on a copy


def test_merge_without_adapter_is_the_base(tiny: Any, tmp_path: Path, tiny_model_dir: Path) -> None:
    out = tiny.save_pretrained(tmp_path / "plain")
    from safetensors.numpy import load_file

    a = load_file(str(out / "model.safetensors"))
    b = load_file(str(tiny_model_dir / "model.safetensors"))
    assert a.keys() <= b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_corrupted_merge_is_caught(tiny: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tiny.add_adapter(AdapterConfig(r=4, alpha=8))
    randomise(tiny)
    real = merge.merged_weights

    def corrupt(model: Any) -> dict[str, np.ndarray]:
        weights = real(model)
        weights["model.layers.1.self_attn.o_proj.weight"] = weights["model.layers.1.self_attn.o_proj.weight"] * 3.0
        return weights

    monkeypatch.setattr(merge, "merged_weights", corrupt)
    with pytest.raises(MergeVerificationError) as info:
        tiny.save_pretrained(tmp_path / "bad")
    assert info.value.max_abs_diff is not None and info.value.max_abs_diff > info.value.tolerance  # type: ignore[operator]
    assert not (tmp_path / "bad").exists()
    assert list(tmp_path.iterdir()) == []  # no half-written temp dirs left behind
