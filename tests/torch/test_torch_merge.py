from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file

from mindprint_interfaces import MergeVerificationError
from mindprint_torch import PyTorchModel, save_merged

from .test_torch_adapters import PROBE, _logits, _with_random_adapter

pytestmark = pytest.mark.torch


def test_save_pretrained_merges_verifies_and_keeps_the_live_adapter(tiny: PyTorchModel, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    model = _with_random_adapter(tiny)
    before = _logits(model)
    out = model.save_pretrained(tmp_path / "merged")
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()
    weights = load_file(str(out / "model.safetensors"))
    assert all(v.dtype == torch.float32 for v in weights.values())
    assert not any("lora" in k for k in weights)
    reloaded = AutoModelForCausalLM.from_pretrained(str(out)).eval()
    with torch.no_grad():
        got = reloaded(input_ids=torch.tensor(PROBE)).logits
    assert torch.allclose(got, before, atol=1e-4)
    assert model.has_adapter() and torch.equal(_logits(model), before)  # the live adapter is untouched


def test_corrupted_merge_is_caught_and_nothing_is_written(tiny: PyTorchModel, tmp_path: Path) -> None:
    model = _with_random_adapter(tiny)

    def corrupt(merged: Any) -> None:
        with torch.no_grad():
            merged.model.layers[0].self_attn.q_proj.weight[3, 5] += 0.5

    with pytest.raises(MergeVerificationError) as info:
        save_merged(model, tmp_path / "bad", _after_merge=corrupt)
    assert info.value.max_abs_diff is not None and info.value.max_abs_diff > info.value.tolerance  # type: ignore[operator]
    assert not (tmp_path / "bad").exists()


def test_corrupted_file_on_disk_is_caught(tiny: PyTorchModel, tmp_path: Path) -> None:
    model = _with_random_adapter(tiny)
    model.save_pretrained(tmp_path / "good")
    good = (tmp_path / "good" / "model.safetensors").read_bytes()

    def corrupt(directory: Path) -> None:
        weights = load_file(str(directory / "model.safetensors"))
        key = next(k for k in weights if k.endswith("layers.1.self_attn.v_proj.weight"))
        weights[key] = weights[key].clone()
        weights[key][0, 0] = float("nan")
        save_file(weights, str(directory / "model.safetensors"), metadata={"format": "pt"})

    with pytest.raises(MergeVerificationError, match="v_proj.weight: differs from base"):  # the tensor check (#20)
        save_merged(model, tmp_path / "good", _after_write=corrupt)
    assert (tmp_path / "good" / "model.safetensors").read_bytes() == good  # the previous save survives
