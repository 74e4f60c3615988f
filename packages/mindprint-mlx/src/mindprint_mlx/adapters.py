"""An MLX model's LoRA layers <-> adapter directories (the file layouts live in :mod:`mindprint_kit.adapter_files`).

This module only moves matrices between mlx-lm's ``LoRALinear`` layers (``lora_a`` (in, r), ``lora_b``
(r, out)) and the kit's PEFT-oriented numpy :data:`~mindprint_kit.adapter_files.LoraWeights`; reading,
writing, converting and the fits-the-model check are the kit's, shared with every backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from mindprint_interfaces import AdapterConfig, AdapterFormatError
from mindprint_interfaces.protocols import PathLike
from mindprint_kit.adapter_files import (
    LoraWeights,
    adapter_config_for,
    base_record,
    check_base,
    check_fits,
    check_format,
    convert_adapter,
    read_adapter,
    write_adapter,
)

from .lora import lora_modules, set_lora_weights
from .quantization import logical_shape

__all__ = ["convert_adapter", "live_weights", "load_adapter", "read_adapter", "save_adapter", "write_adapter"]


class AdaptedModel(Protocol):
    """What adapter I/O needs from an MLX model (MLXModel has it; no import of it here)."""

    module: nn.Module
    model_path: Path
    adapter_config: AdapterConfig | None

    @property
    def num_layers(self) -> int: ...
    def has_adapter(self) -> bool: ...
    def add_adapter(self, config: AdapterConfig, seed: int | None = None) -> None: ...
    def remove_adapter(self) -> None: ...


def live_weights(module: nn.Module) -> LoraWeights:
    """The module's LoRA matrices in PEFT orientation (A = lora_a.T, B = lora_b.T), fp32 numpy."""
    out: LoraWeights = {}
    for site, m in lora_modules(module).items():
        out[site] = (np.array(m.lora_a.astype(mx.float32)).T.copy(), np.array(m.lora_b.astype(mx.float32)).T.copy())
    return out


def module_shapes(module: nn.Module) -> Any:
    """``check_fits``'s question for this model: (in, out) of a layer's linear, or why there is none."""
    def shape(layer: int, name: str) -> tuple[int, int] | str:
        modules: dict[str, Any] = dict(module.layers[layer].named_modules())
        found = modules.get(name)
        base: Any = getattr(found, "linear", found)
        if base is None or not hasattr(base, "weight"):
            return f"module {name!r} not found in the base model"
        return logical_shape(base)  # a quantized base packs its weight: use the layer's logical dims
    return shape


def load_adapter(model: AdaptedModel, path: PathLike) -> None:
    """Load a PEFT or mlx-lm adapter into ``model`` (replacing any adapter it has)."""
    config, weights = read_adapter(path)
    check_fits(weights, num_layers=model.num_layers, module_shape=module_shapes(model.module), where=str(path),
               base=str(model.model_path))
    check_base(path, base_info(model, weights))  # trained on this base? (override: MINDPRINT_ALLOW_OTHER_BASE=1)
    if model.has_adapter():
        model.remove_adapter()
    model.add_adapter(adapter_config_for(config, weights, model.num_layers))
    set_lora_weights(model.module, weights)


def save_adapter(model: AdaptedModel, path: PathLike, *, format: str = "peft") -> Path:
    check_format(format)
    if model.adapter_config is None:
        raise AdapterFormatError("the model has no adapter to save (train it or load one first)")
    weights = live_weights(model.module)
    return write_adapter(path, model.adapter_config, weights, format=format,
                         num_model_layers=model.num_layers, base_model=str(model.model_path),
                         base=base_info(model, weights))


def base_info(model: AdaptedModel, sites: Any) -> dict[str, Any]:
    """The base record (:func:`mindprint_kit.adapter_files.base_record`) of this model for the given sites."""
    weights = {}
    for layer, name in sites:
        if layer >= model.num_layers:
            continue
        found: Any = dict(model.module.layers[layer].named_modules()).get(name)
        base: Any = getattr(found, "linear", found)
        weight = getattr(base, "weight", None)
        if weight is not None and not hasattr(base, "scales"):  # quantized weights are packed: no fingerprint
            weights[(layer, name)] = np.array(weight.astype(mx.float32))
    model_type = str(getattr(model, "hf_config", {}).get("model_type", ""))
    return base_record(model_type, model.num_layers, weights)
