"""Quantized (QLoRA) bases on MLX: mlx-lm's affine quantization, read, applied, described and undone.

A directory written by ``mlx_lm.convert -q`` carries ``"quantization": {"group_size", "bits", "mode"}``
in its ``config.json``; mlx-lm's loader builds ``QuantizedLinear`` / ``QuantizedEmbedding`` layers for it.
A full-precision directory is quantized on load with mlx-lm's own ``quantize_model`` (the function
``mlx_lm.convert -q`` calls), so both give the same layers. LoRA sits on top of the frozen quantized
linears in full precision (``lora.py``); merging dequantizes (:func:`dequantized_parameters`).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx.utils import tree_flatten
from mlx_lm.utils import quantize_model

from mindprint_interfaces import ConfigError, QuantizationConfig

QUANTIZED_TYPES = (nn.QuantizedLinear, nn.QuantizedEmbedding)


def directory_quantization(hf_config: Mapping[str, Any]) -> QuantizationConfig | None:
    """The quantization a model directory declares (mlx-lm's ``quantization`` key), or None."""
    q = hf_config.get("quantization")
    if not isinstance(q, Mapping):
        return None
    mode = q.get("mode", "affine")
    if mode != "affine":
        raise ConfigError(f"the model directory is quantized with mode {mode!r}; mindprint supports affine "
                          "(mlx_lm.convert -q) quantized bases", key="quantization.mode")
    return QuantizationConfig(bits=int(q["bits"]), mode="affine", group_size=int(q["group_size"]))


def quantize(module: nn.Module, hf_config: Mapping[str, Any], request: QuantizationConfig) -> dict[str, Any]:
    """Quantize ``module`` in place as ``mlx_lm.convert -q --q-bits B --q-group-size G`` would; returns the
    config with mlx-lm's ``quantization`` entry."""
    with contextlib.redirect_stdout(io.StringIO()):  # mlx-lm prints its bits-per-weight figure
        _, config = quantize_model(module, dict(hf_config), request.group_size, request.bits, mode="affine")
    mx.eval(module.parameters())
    if not any(isinstance(m, QUANTIZED_TYPES) for _, m in module.named_modules()):
        raise ConfigError(f"no layer of this model can be quantized with group_size {request.group_size} "
                          "(every input dimension must be a multiple of it)", key="quantization.group_size")
    return dict(config)


def resolve(hf_config: Mapping[str, Any], request: QuantizationConfig | None) -> tuple[QuantizationConfig | None, bool]:
    """(the model's quantization, whether it must still be quantized on load) for a directory and a request."""
    existing = directory_quantization(hf_config)
    if request is None:
        return existing, False
    wanted = request.for_backend("mlx")
    if existing is None:
        return wanted, True
    if (existing.bits, existing.group_size) != (wanted.bits, wanted.group_size):
        raise ConfigError(f"the model directory is already quantized ({existing.label}); the request asks for "
                          f"{wanted.label}: load a full-precision directory to quantize it differently",
                          key="quantization")
    return existing, False


def logical_shape(linear: Any) -> tuple[int, int]:
    """(in, out) of a linear as the maths sees it: a QuantizedLinear packs 32 // bits weights per uint32."""
    out_dim, packed_in = linear.weight.shape
    if isinstance(linear, nn.QuantizedLinear):
        return int(packed_in) * 32 // int(linear.bits), int(out_dim)
    return int(packed_in), int(out_dim)


def is_quantized(module: nn.Module) -> bool:
    return any(isinstance(m, QUANTIZED_TYPES) for _, m in module.named_modules())


def dequantized_parameters(module: nn.Module) -> dict[str, np.ndarray]:
    """Every parameter as fp32 numpy, quantized layers dequantized to plain ``weight`` (their ``scales`` and
    ``biases`` dropped): the full-precision model the quantized one computes."""
    out = {name: np.array(v.astype(mx.float32)) for name, v in tree_flatten(module.parameters())}
    for path, m in module.named_modules():
        if not isinstance(m, QUANTIZED_TYPES):
            continue
        prefix = f"{path}." if path else ""
        out[prefix + "weight"] = np.array(mx.dequantize(m.weight, m.scales, m.biases, group_size=m.group_size,
                                                        bits=m.bits, mode=m.mode).astype(mx.float32))
        for leaf in ("scales", "biases"):
            out.pop(prefix + leaf, None)
    return out
