"""LoRA layers on an mlx-lm model, with PEFT semantics (A random, B zero, scale = alpha / r).

mlx-lm's ``LoRALinear`` computes ``y + scale * (x @ lora_a) @ lora_b`` with ``lora_a`` (in, r) and
``lora_b`` (r, out): PEFT's ``A`` (r, in) is ``lora_a.T`` and ``B`` (out, r) is ``lora_b.T``.
mlx-lm's own ``lora_a`` draw is replaced by the kit's (:mod:`mindprint_kit.lora_init`): PEFT's
kaiming_uniform(a=sqrt(5)), i.e. uniform(+-1/sqrt(in)), from a numpy generator seeded by the config seed and
the PEFT parameter name, so both backends start from the same adapter; ``lora_b`` is zero.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_unflatten
from mlx_lm.tuner.lora import LoRALinear
from mlx_lm.tuner.utils import linear_to_lora_layers

from mindprint_interfaces import AdapterConfig, AdapterFormatError
from mindprint_interfaces.architectures import MODULE_PATHS, module_path, resolve_targets
from mindprint_kit.lora_init import check_rank, initial_lora_weights

# The linears LoRA can sit on: full precision, or an mlx-lm quantized base (QLoRA; LoRALinear handles both).
LINEAR_TYPES = (nn.Linear, nn.QuantizedLinear)

LoraSite = tuple[int, str]  # (layer index, module path inside the block, e.g. "self_attn.q_proj")


def lora_modules(model: nn.Module) -> dict[LoraSite, Any]:
    """Every LoRALinear in the decoder blocks, keyed by (layer, module path)."""
    found: dict[LoraSite, Any] = {}
    for i, block in enumerate(model.layers):
        for name, module in block.named_modules():
            if isinstance(module, LoRALinear):
                found[(i, name)] = module
    return found


def resolve_layers(config: AdapterConfig, num_layers: int) -> list[int]:
    if config.layers is None:
        return list(range(num_layers))
    bad = [i for i in config.layers if i >= num_layers]
    if bad:
        raise AdapterFormatError(f"LoRA layers {bad} do not exist: the model has {num_layers} layers (0..{num_layers - 1})")
    return sorted(set(config.layers))


def target_paths(model: nn.Module, config: AdapterConfig, layer: int = 0) -> list[str]:
    """Module paths (``self_attn.q_proj``) of ``config.target_modules`` with presets expanded, every name checked
    against the linears of decoder layer ``layer`` (an error names a missing one and lists what the model has)."""
    linears = {name: module for name, module in model.layers[layer].named_modules()
               if isinstance(module, (nn.Linear, nn.QuantizedLinear))}
    by_short = {name.rsplit(".", 1)[-1]: name for name in linears}
    model_type = getattr(getattr(model, "args", None), "model_type", None)
    names = resolve_targets(config.target_modules, model_type, by_short)
    paths = [by_short[n] for n in names]
    for name, path in zip(names, paths, strict=True):
        if name in MODULE_PATHS and path != module_path(name):
            raise AdapterFormatError(f"target module {name!r} sits at {path!r} in this model, not at "
                                     f"{module_path(name)!r} where PEFT and the adapter files expect it")
    return paths


def apply_lora(model: nn.Module, config: AdapterConfig, seed: int) -> AdapterConfig:
    """Replace the target linears with fresh LoRA layers and make only the LoRA matrices trainable.

    Returns ``config`` with its targets resolved (presets expanded to the module names)."""
    if lora_modules(model):
        raise AdapterFormatError("the model already has a LoRA adapter; remove it first")
    check_rank(config.r, getattr(getattr(model, "args", None), "hidden_size", None))
    num_layers = len(model.layers)
    layers = resolve_layers(config, num_layers)
    keys = target_paths(model, config, layers[0])
    mx.random.seed(seed)  # MLX's dropout RNG (the matrices themselves are the kit's draw)
    if layers == list(range(num_layers - len(layers), num_layers)):
        # Contiguous tail (incl. all layers): mlx-lm's own converter.
        linear_to_lora_layers(model, len(layers),
                              {"rank": config.r, "scale": config.scale, "dropout": config.dropout, "keys": keys})
    else:
        for i in layers:
            block = model.layers[i]
            modules = dict(block.named_modules())
            updates = [(k, LoRALinear.from_base(modules[k], r=config.r, dropout=config.dropout, scale=config.scale))
                       for k in keys]
            block.update_modules(tree_unflatten(updates))
    set_trainable_lora(model)
    set_initial_weights(model, seed)
    return config.replace(target_modules=tuple(sorted(k.rsplit(".", 1)[-1] for k in keys)))


def set_initial_weights(model: nn.Module, seed: int) -> None:
    """The kit's backend-neutral initial adapter for ``seed`` (:mod:`mindprint_kit.lora_init`: PEFT's rule drawn in
    numpy), so torch starts from the same matrices. Shapes come from the live layers (quantized bases too)."""
    shapes = {site: (int(m.lora_a.shape[1]), int(m.lora_a.shape[0]), int(m.lora_b.shape[1]))
              for site, m in lora_modules(model).items()}
    set_lora_weights(model, initial_lora_weights(shapes, seed))


def set_trainable_lora(model: nn.Module) -> None:
    model.freeze()
    for module in lora_modules(model).values():
        module.unfreeze(keys=["lora_a", "lora_b"], recurse=False)


def remove_lora(model: nn.Module) -> None:
    """Put the plain linears back (drops the adapter)."""
    for block in model.layers:
        updates = [(name, m.linear) for name, m in block.named_modules() if isinstance(m, LoRALinear)]
        if updates:
            block.update_modules(tree_unflatten(updates))


@contextlib.contextmanager
def adapters_disabled(model: nn.Module) -> Iterator[None]:
    """Run the base model: LoRA scale 0 inside the block, restored afterwards."""
    modules = list(lora_modules(model).values())
    scales = [m.scale for m in modules]
    try:
        for m in modules:
            m.scale = 0.0
        yield
    finally:
        for m, s in zip(modules, scales, strict=True):
            m.scale = s


def set_lora_weights(model: nn.Module, weights: dict[LoraSite, tuple[Any, Any]]) -> None:
    """Set LoRA matrices from PEFT-oriented arrays: A (r, in), B (out, r)."""
    modules = lora_modules(model)
    for site, (a, b) in weights.items():
        m = modules[site]
        m.lora_a = mx.array(a, dtype=mx.float32).T
        m.lora_b = mx.array(b, dtype=mx.float32).T
    mx.eval(model.parameters())
