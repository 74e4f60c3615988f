"""save_pretrained: merge LoRA into a copy of the weights (fp32), write HF safetensors, verify by reloading.

The merged directory is written to a temporary sibling, reloaded through the same loader as any
HF directory, and its logits on a fixed probe batch are compared with the live model's. Only when
they agree is the directory moved into place; otherwise MergeVerificationError (never a silently
broken model).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import mlx.core as mx
import numpy as np
from mlx.utils import tree_flatten
from safetensors.numpy import save_file

from mindprint_interfaces import HFTokenizer, MergeVerificationError, QuantizationConfig
from mindprint_interfaces.fileio import atomic_directory
from mindprint_interfaces.protocols import PathLike
from mindprint_kit.merge_check import check_written_tensors

from .loading import load_hf_directory
from .lora import lora_modules
from .quantization import dequantized_parameters, quantize


class MergeSource(Protocol):
    """What a merge reads from an MLX model (MLXModel has it; no import of it here)."""

    module: Any
    model_path: Path
    hf_config: dict[str, Any]

    @property
    def tokenizer(self) -> HFTokenizer: ...
    @property
    def dtype(self) -> str: ...
    def logits(self, input_ids: Any) -> Any: ...

# Tolerance on max |logit difference| relative to the logit scale (fp32 merges agree to ~1e-5).
TOLERANCE = {"float32": 1e-3, "bfloat16": 6e-2, "float16": 2e-2}
EXTRA_FILES = ("generation_config.json",)


def merged_weights(model: MergeSource) -> dict[str, np.ndarray]:
    """HF-named fp32 weights with every LoRA delta (scale * B @ A) folded into its base linear.

    A quantized base is dequantized first (the weights it computes with), so the merge is exact."""
    out: dict[str, np.ndarray] = {}
    for name, value in dequantized_parameters(model.module).items():
        leaf = name.rsplit(".", 1)[-1]
        if leaf in ("lora_a", "lora_b"):
            continue
        out[name.replace(".linear.", ".")] = value
    for (layer, module), m in lora_modules(model.module).items():
        key = f"model.layers.{layer}.{module}.weight"
        a = np.array(m.lora_a.astype(mx.float32))  # (in, r)
        b = np.array(m.lora_b.astype(mx.float32))  # (r, out)
        out[key] = out[key] + np.float32(m.scale) * (b.T @ a.T)
    return out


def probe_batch(model: MergeSource) -> list[list[int]]:
    vocab = int(model.hf_config.get("vocab_size") or len(model.tokenizer))
    text = model.tokenizer.encode("The capital of France is Paris. What is two plus two?")[:24]
    spread = [(i * 7919 + 13) % vocab for i in range(24)]
    rows = [r for r in (text, spread) if r]
    width = min(len(r) for r in rows)
    return [r[:width] for r in rows]


def write_hf_directory(model: MergeSource, out: Path, weights: dict[str, np.ndarray]) -> None:
    save_file({k: np.ascontiguousarray(v) for k, v in weights.items()}, str(out / "model.safetensors"),
              metadata={"format": "pt"})
    config = json.loads((model.model_path / "config.json").read_text(encoding="utf-8"))
    config["dtype"] = "float32"
    config.pop("torch_dtype", None)
    for key in ("quantization", "quantization_config"):
        config.pop(key, None)
    (out / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    model.tokenizer.hf.save_pretrained(str(out))
    for name in EXTRA_FILES:
        src = model.model_path / name
        if src.is_file():
            shutil.copy2(src, out / name)


def verify(model: MergeSource, directory: Path) -> float:
    """Reload ``directory`` and compare its logits with ``model``'s on the probe batch; returns max |diff|."""
    probe = mx.array(probe_batch(model))
    expected = model.logits(probe)
    reloaded, _, _ = load_hf_directory(directory, None, mx.float32)
    got = reloaded(probe).astype(mx.float32)
    diff = float(mx.max(mx.abs(expected - got)))
    scale = max(1.0, float(mx.max(mx.abs(expected))))
    tol = TOLERANCE.get(model.dtype, 1e-3) * scale
    if not diff <= tol:  # also catches NaN
        raise MergeVerificationError(
            f"merged model does not reproduce the adapted model's logits: max |diff| = {diff:.3g} > tolerance {tol:.3g}",
            max_abs_diff=diff, tolerance=tol)
    return diff


def save_merged(model: MergeSource, path: PathLike, quantization: QuantizationConfig | None = None, *,
                _after_write: Callable[[Path], None] | None = None) -> Path:
    """Merge, write, then check every written tensor against base + delta (recomputed from the live model) and
    the reloaded logits; ``_after_write`` is a test hook that may corrupt the written directory. With
    ``quantization`` the verified fp32 merge is re-quantized (mlx-lm's ``quantize_model``) and written in the
    ``mlx_lm.convert -q`` layout, whose reload is checked against the re-quantized model in memory."""
    target = Path(path)
    with atomic_directory(target) as tmp:
        write_hf_directory(model, tmp, merged_weights(model))
        if _after_write is not None:
            _after_write(tmp)
        expected = merged_weights(model)
        check_written_tensors(tmp, {k: _const(v) for k, v in expected.items()}, where=f"merged model ({target})")
        del expected
        verify(model, tmp)
        if quantization is not None:
            requantize_directory(model, tmp, quantization.for_backend("mlx"))
    return target


def _const(value: np.ndarray) -> Callable[[], np.ndarray]:
    return lambda: value


def requantize_directory(model: MergeSource, directory: Path, quantization: QuantizationConfig) -> None:
    """Replace the fp32 merged weights in ``directory`` by their quantized form (mlx-lm layout), verified."""
    module, _, hf_config = load_hf_directory(directory, None, mx.float32)
    config = quantize(module, hf_config, quantization)
    weights = {k: np.ascontiguousarray(np.array(v)) for k, v in tree_flatten(module.parameters())}
    (directory / "model.safetensors").unlink()
    save_file(weights, str(directory / "model.safetensors"), metadata={"format": "mlx"})
    on_disk = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    on_disk["quantization"] = config["quantization"]
    on_disk["quantization_config"] = config["quantization"]
    (directory / "config.json").write_text(json.dumps(on_disk, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    probe = mx.array(probe_batch(model))
    expected = module(probe).astype(mx.float32)
    reloaded, _, _ = load_hf_directory(directory, None, mx.float32)
    got = reloaded(probe).astype(mx.float32)
    diff = float(mx.max(mx.abs(expected - got)))
    tol = TOLERANCE["float32"] * max(1.0, float(mx.max(mx.abs(expected))))
    if not diff <= tol:
        raise MergeVerificationError(
            f"the re-quantized merged model does not reload to the same logits: max |diff| = {diff:.3g} > {tol:.3g}",
            max_abs_diff=diff, tolerance=tol)
