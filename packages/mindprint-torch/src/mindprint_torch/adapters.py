"""LoRA adapters through PEFT: add, save (PEFT or mlx-lm layout, atomically), load (either layout).

The canonical on-disk format is PEFT's own (``PeftModel.save_pretrained``). Reading either layout,
writing mlx-lm's, converting and the fits-the-model check are :mod:`mindprint_kit.adapter_files`'
(shared with every backend); this module moves matrices between PEFT's live LoRA layers and the kit's
PEFT-oriented numpy :data:`~mindprint_kit.adapter_files.LoraWeights`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from mindprint_interfaces import AdapterConfig, AdapterFormatError
from mindprint_interfaces.adapter_format import LoraKey, parse_peft_key
from mindprint_interfaces.architectures import resolve_targets
from mindprint_interfaces.fileio import atomic_directory
from mindprint_interfaces.protocols import PathLike
from mindprint_kit.adapter_files import (
    LoraWeights,
    adapter_config_for,
    add_base_record,
    base_record,
    check_base,
    check_fits,
    check_format,
    convert_adapter,
    read_adapter,
    write_adapter,
)
from mindprint_kit.lora_init import check_rank, initial_lora_weights

__all__ = ["ADAPTER_NAME", "add_adapter", "convert_adapter", "current_config", "live_weights", "load_adapter",
           "lora_config", "save_adapter", "set_initial_weights"]

ADAPTER_NAME = "default"


class PeftHost(Protocol):
    """What adapter I/O needs from a torch model (PyTorchModel has it; no import of it here)."""

    hf_model: Any

    @property
    def num_layers(self) -> int: ...
    @property
    def base_model(self) -> Any: ...
    @property
    def torch_dtype(self) -> torch.dtype: ...
    def has_adapter(self) -> bool: ...


def lora_config(config: AdapterConfig) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=config.r,
        lora_alpha=_alpha(config.alpha),
        lora_dropout=config.dropout,
        target_modules=sorted(config.target_modules),
        layers_to_transform=list(config.layers) if config.layers is not None else None,
        bias="none",
        task_type="CAUSAL_LM",
    )


def _alpha(value: float) -> Any:
    """PEFT annotates lora_alpha as int but computes alpha / r in float; keep integral values as int."""
    return int(value) if float(value).is_integer() else float(value)


def add_adapter(model: PeftHost, config: AdapterConfig, *, seed: int | None = None) -> None:
    """Wrap the model with a fresh LoRA adapter (B = 0, so outputs are unchanged until trained).

    With ``seed``, lora_A is PEFT's initialisation drawn by the kit's backend-neutral generator
    (:mod:`mindprint_kit.lora_init`; the process-wide RNG is left as it was): the same config and seed
    give the same starting adapter on every backend and whatever ran before — a resumed pipeline then
    reproduces an uninterrupted one. Without ``seed``, PEFT draws from torch's global RNG.
    """
    import torch
    from peft import get_peft_model

    if model.has_adapter():
        raise AdapterFormatError("the model already has an adapter; save it or merge it (save_pretrained) first")
    _check_layers(model, config)
    check_rank(config.r, getattr(getattr(model.hf_model, "config", None), "hidden_size", None))
    config = resolve_adapter_targets(model, config)
    if seed is None:
        model.hf_model = get_peft_model(model.hf_model, lora_config(config), adapter_name=ADAPTER_NAME)
        return
    with torch.random.fork_rng(devices=[]):  # PEFT's own draw (overwritten below) leaves the global RNG alone
        model.hf_model = get_peft_model(model.hf_model, lora_config(config), adapter_name=ADAPTER_NAME)
    set_initial_weights(model, seed)


def set_initial_weights(model: PeftHost, seed: int) -> None:
    """Overwrite the live adapter with the kit's backend-neutral initial weights for ``seed``
    (:mod:`mindprint_kit.lora_init`: PEFT's rule, drawn in numpy, so MLX starts from the same adapter)."""
    from peft import get_peft_model_state_dict, set_peft_model_state_dict

    state = get_peft_model_state_dict(model.hf_model, adapter_name=ADAPTER_NAME)
    halves: dict[tuple[int, str], dict[str, tuple[int, ...]]] = {}
    for name, value in state.items():
        key = parse_peft_key(name)
        halves.setdefault((key.layer, key.module), {})[key.matrix] = tuple(value.shape)
    shapes = {site: (pair["A"][0], pair["A"][1], pair["B"][0]) for site, pair in halves.items()}
    dtype = model.torch_dtype
    tensors = {}
    for (layer, module), (a, b) in initial_lora_weights(shapes, seed).items():
        tensors[LoraKey(layer, module, "A").peft()] = torch.from_numpy(a).to(dtype)
        tensors[LoraKey(layer, module, "B").peft()] = torch.from_numpy(b).to(dtype)
    result = set_peft_model_state_dict(model.hf_model, tensors, adapter_name=ADAPTER_NAME)
    unexpected = list(getattr(result, "unexpected_keys", []) or [])
    if unexpected:
        raise AdapterFormatError(f"initial LoRA weights not used by the model: {', '.join(unexpected[:5])}")


def resolve_adapter_targets(model: PeftHost, config: AdapterConfig) -> AdapterConfig:
    """``config`` with its presets expanded and every target checked against the decoder layer's linears
    (PEFT itself would silently adapt only the names that exist: phi3 asked for q/k/v/o gets only o_proj)."""
    base = model.base_model
    layers = base.model.layers if hasattr(base, "model") and hasattr(base.model, "layers") else None
    if layers is None:  # not the decoder-layers layout: PEFT matches the names itself (and fails on none found)
        return config
    index = config.layers[0] if config.layers else 0
    available = {name.rsplit(".", 1)[-1] for name, module in layers[index].named_modules()
                 if isinstance(module, torch.nn.Linear)}
    model_type = getattr(base.config, "model_type", None)
    return config.replace(target_modules=resolve_targets(config.target_modules, model_type, available))


def _check_layers(model: PeftHost, config: AdapterConfig) -> None:
    if config.layers is not None and any(i >= model.num_layers for i in config.layers):
        bad = [i for i in config.layers if i >= model.num_layers]
        raise AdapterFormatError(f"lora layers {bad} do not exist: the model has {model.num_layers} layers (0..{model.num_layers - 1})")


def current_config(model: PeftHost) -> AdapterConfig:
    """AdapterConfig of the model's live adapter."""
    if not model.has_adapter():
        raise AdapterFormatError("the model has no adapter")
    cfg = model.hf_model.peft_config[ADAPTER_NAME]
    targets = cfg.target_modules
    if isinstance(targets, str):
        raise AdapterFormatError("adapters with a regex target_modules are not supported")
    layers = cfg.layers_to_transform
    if isinstance(layers, int):
        layers = [layers]
    return AdapterConfig(r=int(cfg.r), alpha=float(cfg.lora_alpha), dropout=float(cfg.lora_dropout),
                         target_modules=tuple(sorted(str(t) for t in targets)),
                         layers=tuple(int(i) for i in layers) if layers else None)


def live_weights(model: PeftHost) -> LoraWeights:
    """The live adapter's LoRA matrices as fp32 numpy in PEFT orientation, keyed by (layer, module)."""
    from peft import get_peft_model_state_dict

    state = get_peft_model_state_dict(model.hf_model, adapter_name=ADAPTER_NAME)
    halves: dict[tuple[int, str], dict[str, np.ndarray]] = {}
    for name, value in state.items():
        key = parse_peft_key(name)
        halves.setdefault((key.layer, key.module), {})[key.matrix] = value.detach().float().cpu().numpy().copy()
    return {site: (pair["A"], pair["B"]) for site, pair in sorted(halves.items())}


# -- model-level save / load ------------------------------------------------------------------------------------
def save_adapter(model: PeftHost, path: PathLike, *, format: str = "peft") -> Path:
    """Save the live adapter. ``peft`` uses PEFT's own writer; ``mlx`` writes mlx-lm's layout. Atomic."""
    check_format(format)
    if not model.has_adapter():
        raise AdapterFormatError("the model has no adapter to save (train it or load one first)")
    base = base_info(model, live_weights(model))
    if format == "peft":
        with atomic_directory(path) as tmp:
            model.hf_model.save_pretrained(str(tmp), selected_adapters=[ADAPTER_NAME], save_embedding_layers=False)
            add_base_record(tmp, base)  # what it was trained on (PEFT ignores the extra key)
        return Path(path)
    return write_adapter(path, current_config(model), live_weights(model), format="mlx",
                         num_model_layers=model.num_layers, base=base)


def base_info(model: PeftHost, sites: Any) -> dict[str, Any]:
    """The base record (:func:`mindprint_kit.adapter_files.base_record`) of this model for the given sites."""
    layers = model.base_model.model.layers
    weights = {}
    for layer, name in sites:
        if layer < len(layers):
            try:
                module = layers[layer].get_submodule(name)
            except AttributeError:
                continue
            weight = getattr(getattr(module, "base_layer", module), "weight", None)
            # quantized (bitsandbytes) weights are packed: no fingerprint, as on MLX
            if weight is not None and weight.is_floating_point() and getattr(weight, "quant_state", None) is None:
                weights[(layer, name)] = weight.detach().float().cpu().numpy()
    return base_record(str(getattr(model.base_model.config, "model_type", "")), model.num_layers, weights)


def module_shapes(model: PeftHost) -> Any:
    """``check_fits``'s question for this model: (in, out) of a layer's linear, or why there is none."""
    layers = model.base_model.model.layers if hasattr(model.base_model, "model") else None
    if layers is None:
        raise AdapterFormatError(f"cannot locate decoder layers in {type(model.base_model).__name__}")

    def shape(layer: int, name: str) -> tuple[int, int] | str:
        try:
            module = layers[layer].get_submodule(name)
        except AttributeError:
            return f"module {name!r} not found in the base model"
        base_layer = getattr(module, "base_layer", module)
        in_f, out_f = getattr(base_layer, "in_features", None), getattr(base_layer, "out_features", None)
        if in_f is None or out_f is None:
            return f"{name} is not a linear layer"
        return int(in_f), int(out_f)
    return shape


def load_adapter(model: PeftHost, path: PathLike) -> None:
    """Replace the model's adapter (if any) with the one in ``path`` (PEFT or mlx-lm layout)."""
    from peft import get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict

    config, weights = read_adapter(path)
    check_fits(weights, num_layers=model.num_layers, module_shape=module_shapes(model), where=str(path))
    check_base(path, base_info(model, weights))  # trained on this base? (override: MINDPRINT_ALLOW_OTHER_BASE=1)
    config = adapter_config_for(config, weights, model.num_layers)
    tensors: dict[LoraKey, torch.Tensor] = {}
    for (layer, module), (a, b) in weights.items():
        tensors[LoraKey(layer, module, "A")] = torch.from_numpy(a)
        tensors[LoraKey(layer, module, "B")] = torch.from_numpy(b)
    base = model.hf_model.unload() if model.has_adapter() else model.hf_model
    peft_model = get_peft_model(base, lora_config(config), adapter_name=ADAPTER_NAME)
    dtype = model.torch_dtype
    state = {k.peft(): v.to(dtype) for k, v in tensors.items()}
    expected = {parse_peft_key(k) for k in get_peft_model_state_dict(peft_model, adapter_name=ADAPTER_NAME)}
    missing = [k.peft() for k in expected if k not in tensors]
    if missing:
        base_back = peft_model.unload()
        model.hf_model = base_back
        raise AdapterFormatError(f"{path}: adapter is missing weights: {', '.join(sorted(missing)[:5])}")
    result = set_peft_model_state_dict(peft_model, state, adapter_name=ADAPTER_NAME)
    unexpected = list(getattr(result, "unexpected_keys", []) or [])
    if unexpected:
        model.hf_model = peft_model.unload()
        raise AdapterFormatError(f"{path}: adapter weights not used by the model: {', '.join(unexpected[:5])}")
    model.hf_model = peft_model
