"""Half-precision training (#17): a bf16/fp16 base with the LoRA weights and optimizer state in fp32, on both backends.

PEFT keeps the adapter in fp32 on a half base (``autocast_adapter_dtype``) and MLX's LoRA layers are created in
fp32; both backends must keep it that way, stay close to the fp32 run, and stop cleanly (no adapter with
non-finite weights, an error naming the step) when fp16 overflows.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from mindprint_interfaces import create_backend

SFT = [{"instruction": f"Question {i}?", "output": f"Answer number {i} is here."} for i in range(8)]
CFG = {"max_steps": 4, "learning_rate": 1e-3, "per_device_batch_size": 2, "lr_scheduler": "constant"}


_FP32: dict[str, list[float]] = {}  # the fp32 curve per backend (one run each, shared by the dtype cases)


def _lora_dtypes(backend: str, model: Any) -> set[str]:
    if backend == "pytorch":
        return {str(p.dtype).removeprefix("torch.") for _, p in model.hf_model.named_parameters() if p.requires_grad}
    from mlx.utils import tree_flatten

    return {str(v.dtype).removeprefix("mlx.core.") for _, v in tree_flatten(model.module.trainable_parameters())}


def _base_dtype(backend: str, model: Any) -> str:
    if backend == "pytorch":
        return str(next(p for p in model.hf_model.parameters() if not p.requires_grad).dtype).removeprefix("torch.")
    return str(model.module.model.embed_tokens.weight.dtype).removeprefix("mlx.core.")


def _curve(backend: str, dtype: str, model_dir: Path, out: Path) -> tuple[list[float], Any]:
    b = create_backend(backend, device="cpu", dtype=dtype, seed=0)
    model = b.load_model(model_dir)
    result = b.create_sft_trainer(model, {**CFG, "output_dir": str(out)}).train(SFT)
    assert result.success, result.error_message
    return [h["loss"] for h in result.metrics["history"]], model


@pytest.mark.torch
@pytest.mark.mlx
@pytest.mark.parametrize("backend", ["pytorch", "mlx"])
@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_base_trains_fp32_lora_close_to_the_fp32_run(backend: str, dtype: str, tiny_model_dir: Path,
                                                          tmp_path: Path) -> None:
    if backend not in _FP32:
        _FP32[backend] = _curve(backend, "float32", tiny_model_dir, tmp_path / "fp32")[0]
    full = _FP32[backend]
    half, model = _curve(backend, dtype, tiny_model_dir, tmp_path / dtype)
    assert _base_dtype(backend, model) == dtype
    assert _lora_dtypes(backend, model) == {"float32"}  # adapter (and so AdamW's moments) stay fp32
    rel = np.abs(np.array(half) - np.array(full)) / np.abs(np.array(full))
    print(f"{backend} {dtype}: max relative loss difference to fp32 {rel.max():.2e}")
    # measured on the tiny model (4 steps): bf16 2.5e-4, fp16 2e-5 relative at most, on both backends; a
    # half-precision LoRA or optimizer state drifts by more as steps accumulate
    assert rel.max() < 5e-3, (half, full)
    assert rel.max() > 0  # the base really ran in half precision


@pytest.mark.torch
@pytest.mark.mlx
@pytest.mark.parametrize("backend", ["pytorch", "mlx"])
def test_fp16_overflow_stops_the_run_and_keeps_no_adapter(backend: str, tiny_model_dir: Path,
                                                          tmp_path: Path) -> None:
    """Embeddings beyond fp16's range (65504) overflow to inf on an fp16 base: the run fails by name, saves nothing."""
    model_dir = tmp_path / "hot"
    shutil.copytree(tiny_model_dir, model_dir)
    weights = load_file(str(model_dir / "model.safetensors"))
    key = next(k for k in weights if k.endswith("embed_tokens.weight"))
    weights[key] = (weights[key] * 1e7).astype(np.float32)
    save_file(weights, str(model_dir / "model.safetensors"), metadata={"format": "pt"})
    assert json.loads((model_dir / "config.json").read_text())["hidden_size"]
    b = create_backend(backend, device="cpu", dtype="float16", seed=0)
    result = b.create_sft_trainer(b.load_model(model_dir), {**CFG, "output_dir": str(tmp_path / "out")}).train(SFT)
    assert not result.success
    assert "non-finite" in (result.error_message or "")
    assert result.adapter_path == ""
    assert not (tmp_path / "out" / "adapter").exists()
