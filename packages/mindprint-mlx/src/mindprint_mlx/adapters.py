"""Adapters on disk: the canonical PEFT layout (default) and mlx-lm's layout; exact conversion both ways.

PEFT: ``adapter_model.safetensors`` keys ``base_model.model.model.layers.{i}.{module}.lora_A.weight`` (r, in)
and ``lora_B.weight`` (out, r), ``adapter_config.json`` with ``r``/``lora_alpha``/``target_modules``.
mlx-lm: ``adapters.safetensors`` keys ``model.layers.{i}.{module}.lora_a`` (in, r) / ``lora_b`` (r, out),
``adapter_config.json`` with ``num_layers`` and ``lora_parameters: {rank, scale, dropout, keys}``.
Tensors are handled as numpy arrays (fp32), so conversion is a transpose and nothing else.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from safetensors.numpy import load_file, save_file

from mindprint_interfaces import AdapterConfig, AdapterFormatError
from mindprint_interfaces.adapter_format import (
    MLX_WEIGHTS,
    PEFT_CONFIG,
    PEFT_WEIGHTS,
    LoraKey,
    detect_layout,
    mlx_config_dict,
    parse_mlx_key,
    parse_peft_key,
    peft_config_dict,
    read_adapter_config,
)
from mindprint_interfaces.fileio import atomic_directory
from mindprint_interfaces.protocols import Model, PathLike

if TYPE_CHECKING:
    from .model import MLXModel

FORMATS = ("peft", "mlx")
# (layer, module path) -> (A (r, in), B (out, r)) in PEFT orientation.
LoraWeights = dict[tuple[int, str], tuple[np.ndarray, np.ndarray]]


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise AdapterFormatError(f"unknown adapter format {fmt!r}; use 'peft' (canonical) or 'mlx' (mlx-lm)")


def read_adapter(path: PathLike) -> tuple[AdapterConfig, LoraWeights]:
    """Read either layout into an AdapterConfig and PEFT-oriented numpy matrices."""
    p = Path(path)
    layout = detect_layout(p)
    file = p / (PEFT_WEIGHTS if layout == "peft" else MLX_WEIGHTS)
    try:
        tensors = load_file(str(file))
    except Exception as exc:  # safetensors raises several types for a corrupt file
        raise AdapterFormatError(f"{file}: cannot read adapter weights: {exc}") from None
    halves: dict[tuple[int, str], dict[str, np.ndarray]] = {}
    for key, value in tensors.items():
        lk = parse_peft_key(key) if layout == "peft" else parse_mlx_key(key)
        matrix = value.astype(np.float32)
        if layout == "mlx":
            matrix = matrix.T  # lora_a (in, r) -> A (r, in); lora_b (r, out) -> B (out, r)
        halves.setdefault((lk.layer, lk.module), {})[lk.matrix] = np.ascontiguousarray(matrix)
    weights: LoraWeights = {}
    for site, pair in sorted(halves.items()):
        if set(pair) != {"A", "B"}:
            raise AdapterFormatError(f"{file}: layer {site[0]} {site[1]} has lora_{'A' if 'A' in pair else 'B'} only")
        weights[site] = (pair["A"], pair["B"])
    if not weights:
        raise AdapterFormatError(f"{file}: no LoRA tensors")
    layers = sorted({layer for layer, _ in weights})
    config = read_adapter_config(p, layers)
    if config.layers is None and layout == "peft" and layers != list(range(len(layers))):
        config = config.replace(layers=tuple(layers))
    ranks = {a.shape[0] for a, _ in weights.values()} | {b.shape[1] for _, b in weights.values()}
    if ranks != {config.r}:
        raise AdapterFormatError(f"{p}: config says r={config.r} but the tensors have rank {sorted(ranks)}")
    return config, weights


def write_adapter(path: PathLike, config: AdapterConfig, weights: LoraWeights, *, format: str = "peft",
                  num_model_layers: int | None = None, base_model: str = "") -> Path:
    """Write atomically in ``format``; ``num_model_layers`` is needed for the mlx-lm layout (last-N semantics)."""
    _check_format(format)
    tensors: dict[str, np.ndarray] = {}
    for (layer, module), (a, b) in weights.items():
        if format == "peft":
            tensors[LoraKey(layer, module, "A").peft()] = np.ascontiguousarray(a, dtype=np.float32)
            tensors[LoraKey(layer, module, "B").peft()] = np.ascontiguousarray(b, dtype=np.float32)
        else:
            tensors[LoraKey(layer, module, "A").mlx()] = np.ascontiguousarray(a.T, dtype=np.float32)
            tensors[LoraKey(layer, module, "B").mlx()] = np.ascontiguousarray(b.T, dtype=np.float32)
    if format == "peft":
        cfg_dict = peft_config_dict(config, base_model)
    else:
        n = num_model_layers if num_model_layers is not None else max(layer for layer, _ in weights) + 1
        cfg_dict = mlx_config_dict(config, n)
    target = Path(path)
    with atomic_directory(target) as tmp:
        save_file(tensors, str(tmp / (PEFT_WEIGHTS if format == "peft" else MLX_WEIGHTS)), metadata={"format": "pt"})
        (tmp / PEFT_CONFIG).write_text(json.dumps(cfg_dict, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return target


def convert_adapter(src: PathLike, dst: PathLike, *, to: str, num_model_layers: int | None = None) -> Path:
    """Convert an adapter directory between the PEFT and mlx-lm layouts (exact: transposes only).

    For ``to="mlx"`` the adapter must cover the last N layers of the model; ``num_model_layers``
    defaults to the highest adapted layer + 1.
    """
    _check_format(to)
    config, weights = read_adapter(src)
    base = ""
    if to == "peft":
        try:
            base = str(json.loads((Path(src) / PEFT_CONFIG).read_text()).get("base_model_name_or_path") or "")
        except (OSError, json.JSONDecodeError):
            base = ""
    return write_adapter(dst, config, weights, format=to, num_model_layers=num_model_layers, base_model=base)


def model_lora_weights(model: "MLXModel") -> LoraWeights:
    """The model's LoRA matrices in PEFT orientation (A = lora_a.T, B = lora_b.T), fp32 numpy."""
    import mlx.core as mx

    from .lora import lora_modules

    out: LoraWeights = {}
    for site, m in lora_modules(model.module).items():
        a = np.array(m.lora_a.astype(mx.float32)).T.copy()
        b = np.array(m.lora_b.astype(mx.float32)).T.copy()
        out[site] = (a, b)
    return out


def check_compatible(model: "MLXModel", config: AdapterConfig, weights: LoraWeights, source: str) -> None:
    """Every adapted module must exist in the base model with matching shapes; list all mismatches."""
    problems: list[str] = []
    n = model.num_layers
    for (layer, module), (a, b) in weights.items():
        if layer >= n:
            problems.append(f"layer {layer} does not exist (the base model has {n} layers)")
            continue
        modules: dict[str, Any] = dict(model.module.layers[layer].named_modules())
        base: Any = getattr(modules[module], "linear", modules[module]) if module in modules else None
        if base is None or not hasattr(base, "weight"):
            problems.append(f"layer {layer}: module {module!r} not found in the base model")
            continue
        out_dim, in_dim = base.weight.shape
        if a.shape[1] != in_dim or b.shape[0] != out_dim:
            problems.append(f"layer {layer} {module}: adapter expects (in={a.shape[1]}, out={b.shape[0]}), "
                            f"base model has (in={in_dim}, out={out_dim})")
    if problems:
        shown = "; ".join(sorted(set(problems))[:8])
        more = f" (and {len(set(problems)) - 8} more)" if len(set(problems)) > 8 else ""
        raise AdapterFormatError(f"{source}: adapter does not fit the base model {model.model_path}: {shown}{more}")


def load_adapter(model: "MLXModel", path: PathLike) -> None:
    """Load a PEFT or mlx-lm adapter into ``model`` (replacing any adapter it has)."""
    from .lora import set_lora_weights

    config, weights = read_adapter(path)
    check_compatible(model, config, weights, str(path))
    if model.has_adapter():
        model.remove_adapter()
    modules = {m for _, m in weights}
    short = tuple(sorted(m.rsplit(".", 1)[-1] for m in modules))
    layers = sorted({layer for layer, _ in weights})
    config = config.replace(target_modules=short,
                            layers=None if layers == list(range(model.num_layers)) else tuple(layers))
    model.add_adapter(config)
    set_lora_weights(model.module, {site: (a, b) for site, (a, b) in weights.items()})


def save_adapter(model: "MLXModel", path: PathLike, *, format: str = "peft") -> Path:
    _check_format(format)
    if model.adapter_config is None:
        raise AdapterFormatError("the model has no adapter to save")
    return write_adapter(path, model.adapter_config, model_lora_weights(model), format=format,
                         num_model_layers=model.num_layers, base_model=str(model.model_path))


class MLXAdapterManager:
    """AdapterManager protocol: add / save / load / convert LoRA adapters of MLX models."""

    def add_adapter(self, model: Model, config: AdapterConfig) -> None:
        from .backend import ensure_mlx_model

        ensure_mlx_model(model).add_adapter(config)

    def save(self, model: Model, path: PathLike, *, format: str = "peft") -> Path:
        from .backend import ensure_mlx_model

        return save_adapter(ensure_mlx_model(model), path, format=format)

    def load(self, model: Model, path: PathLike) -> None:
        from .backend import ensure_mlx_model

        load_adapter(ensure_mlx_model(model), path)

    def convert(self, src: PathLike, dst: PathLike, *, to: str) -> Path:
        return convert_adapter(src, dst, to=to)
