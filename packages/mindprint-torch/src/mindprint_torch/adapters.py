"""LoRA adapters through PEFT: add, save (PEFT or mlx-lm layout, atomically), load (either layout), convert.

The canonical on-disk format is PEFT's own (``PeftModel.save_pretrained``). mlx-lm's layout is
read and written by exact conversion: ``lora_a = A.T`` (in, r), ``lora_b = B.T`` (r, out),
``scale = alpha / r``. Loading checks the adapter against the base model (layer count, module
names, matrix shapes) and says what does not fit.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

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

from .model import PyTorchModel, ensure_torch_model

ADAPTER_NAME = "default"
LoraTensors = dict[LoraKey, torch.Tensor]  # PEFT orientation: A (r, in), B (out, r)


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


def add_adapter(model: PyTorchModel, config: AdapterConfig, *, seed: int | None = None) -> None:
    """Wrap the model with a fresh LoRA adapter (B = 0, so outputs are unchanged until trained).

    With ``seed``, lora_A is drawn from a generator seeded with it (the process-wide RNG is
    left as it was), so the same config gives the same starting adapter whatever ran before —
    a resumed pipeline then reproduces an uninterrupted one.
    """
    import torch
    from peft import get_peft_model

    if model.has_adapter():
        raise AdapterFormatError("the model already has an adapter; save it or merge it (save_pretrained) first")
    _check_layers(model, config)
    if seed is None:
        model.hf_model = get_peft_model(model.hf_model, lora_config(config), adapter_name=ADAPTER_NAME)
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model.hf_model = get_peft_model(model.hf_model, lora_config(config), adapter_name=ADAPTER_NAME)


def _check_layers(model: PyTorchModel, config: AdapterConfig) -> None:
    if config.layers is not None and any(i >= model.num_layers for i in config.layers):
        bad = [i for i in config.layers if i >= model.num_layers]
        raise AdapterFormatError(f"lora layers {bad} do not exist: the model has {model.num_layers} layers (0..{model.num_layers - 1})")


def current_config(model: PyTorchModel) -> AdapterConfig:
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


def live_tensors(model: PyTorchModel) -> LoraTensors:
    """The live adapter's LoRA matrices (detached CPU copies), keyed by layer/module/matrix."""
    from peft import get_peft_model_state_dict

    state = get_peft_model_state_dict(model.hf_model, adapter_name=ADAPTER_NAME)
    return {parse_peft_key(k): v.detach().to("cpu").clone() for k, v in state.items()}


# -- reading / writing adapter directories ----------------------------------------------------------------------
def read_adapter(path: PathLike) -> tuple[AdapterConfig, LoraTensors, dict[str, Any]]:
    """(config, tensors in PEFT orientation, raw adapter_config.json) from a PEFT or mlx-lm directory."""
    from safetensors.torch import load_file

    p = Path(path)
    layout = detect_layout(p)
    raw = json.loads((p / PEFT_CONFIG).read_text(encoding="utf-8"))
    try:
        weights = load_file(str(p / (PEFT_WEIGHTS if layout == "peft" else MLX_WEIGHTS)))
    except Exception as exc:  # safetensors raises its own error types
        raise AdapterFormatError(f"{p}: cannot read adapter weights: {exc}") from None
    tensors: LoraTensors = {}
    for name, value in weights.items():
        if layout == "peft":
            tensors[parse_peft_key(name)] = value
        else:
            tensors[parse_mlx_key(name)] = value.T.contiguous()  # mlx (in, r)/(r, out) -> PEFT (r, in)/(out, r)
    if not tensors:
        raise AdapterFormatError(f"{p}: the adapter has no LoRA weights")
    config = read_adapter_config(p, sorted({k.layer for k in tensors}))
    if layout == "peft":
        unsupported = [k for k in ("use_dora", "use_rslora") if raw.get(k)]
        if raw.get("bias", "none") != "none":
            unsupported.append(f"bias={raw['bias']!r}")
        if raw.get("modules_to_save"):
            unsupported.append("modules_to_save")
        if unsupported:
            raise AdapterFormatError(f"{p}: unsupported PEFT adapter options: {', '.join(unsupported)}")
    _check_pairs(p, config, tensors)
    return config, tensors, raw


def _check_pairs(where: Path, config: AdapterConfig, tensors: LoraTensors) -> None:
    problems: list[str] = []
    for key, value in tensors.items():
        other = LoraKey(key.layer, key.module, "B" if key.matrix == "A" else "A")
        if other not in tensors:
            problems.append(f"{key.peft()} has no matching lora_{other.matrix}")
        if value.dim() != 2:
            problems.append(f"{key.peft()} is not a matrix (shape {tuple(value.shape)})")
            continue
        rank = value.shape[0] if key.matrix == "A" else value.shape[1]
        if rank != config.r:
            problems.append(f"{key.peft()} has rank {rank} but the config says r={config.r}")
    if problems:
        raise AdapterFormatError(f"{where}: inconsistent adapter: " + "; ".join(problems[:10]))


def write_adapter(dst: PathLike, config: AdapterConfig, tensors: Mapping[LoraKey, torch.Tensor], *, to: str,
                  base_model_name_or_path: str = "", num_model_layers: int | None = None) -> Path:
    """Write ``tensors`` (PEFT orientation) as a PEFT or mlx-lm adapter directory, atomically."""
    from safetensors.torch import save_file

    if to not in ("peft", "mlx"):
        raise AdapterFormatError(f"unknown adapter format {to!r}; expected 'peft' or 'mlx'")
    if to == "peft":
        cfg = peft_config_dict(config, base_model_name_or_path)
        weights = {k.peft(): v.detach().to("cpu").contiguous() for k, v in tensors.items()}
        names = (PEFT_CONFIG, PEFT_WEIGHTS)
    else:
        layers = num_model_layers if num_model_layers is not None else max(k.layer for k in tensors) + 1
        if config.layers is None:
            config = AdapterConfig(r=config.r, alpha=config.alpha, dropout=config.dropout,
                                   target_modules=config.target_modules, layers=tuple(sorted({k.layer for k in tensors})))
        cfg = mlx_config_dict(config, layers)
        weights = {k.mlx(): v.detach().to("cpu").T.contiguous() for k, v in tensors.items()}
        names = (PEFT_CONFIG, MLX_WEIGHTS)
    with atomic_directory(dst) as tmp:
        (tmp / names[0]).write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        save_file(weights, str(tmp / names[1]), metadata={"format": "pt"})
    return Path(dst)


def convert_adapter(src: PathLike, dst: PathLike, *, to: str = "peft", num_model_layers: int | None = None) -> Path:
    """Convert an adapter directory between the PEFT and mlx-lm layouts (exact: transpose, alpha = scale * r)."""
    config, tensors, raw = read_adapter(src)
    if to == detect_layout(src):
        with atomic_directory(dst) as tmp:
            for f in Path(src).iterdir():
                if f.is_file():
                    shutil.copy2(f, tmp / f.name)
        return Path(dst)
    base = str(raw.get("base_model_name_or_path") or "")
    return write_adapter(dst, config, tensors, to=to, base_model_name_or_path=base, num_model_layers=num_model_layers)


# -- model-level save / load ------------------------------------------------------------------------------------
def save_adapter(model: PyTorchModel, path: PathLike, *, format: str = "peft") -> Path:
    """Save the live adapter. ``peft`` uses PEFT's own writer; ``mlx`` writes mlx-lm's layout. Atomic."""
    if not model.has_adapter():
        raise AdapterFormatError("the model has no adapter to save (train it or load one first)")
    if format == "peft":
        with atomic_directory(path) as tmp:
            model.hf_model.save_pretrained(str(tmp), selected_adapters=[ADAPTER_NAME], save_embedding_layers=False)
        return Path(path)
    if format == "mlx":
        return write_adapter(path, current_config(model), live_tensors(model), to="mlx",
                             num_model_layers=model.num_layers)
    raise AdapterFormatError(f"unknown adapter format {format!r}; expected 'peft' or 'mlx'")


def check_compatible(model: PyTorchModel, config: AdapterConfig, tensors: LoraTensors, where: str = "") -> None:
    """Raise AdapterFormatError naming every way the adapter does not fit the model."""
    problems: list[str] = []
    n = model.num_layers
    layers = model.base_model.model.layers if hasattr(model.base_model, "model") else None
    if layers is None:
        raise AdapterFormatError(f"{where}: cannot locate decoder layers in {type(model.base_model).__name__}")
    for key, value in sorted(tensors.items(), key=lambda kv: (kv[0].layer, kv[0].module, kv[0].matrix)):
        if key.layer >= n:
            problems.append(f"layer {key.layer} does not exist (the base model has {n} layers)")
            continue
        try:
            module = layers[key.layer].get_submodule(key.module)
        except AttributeError:
            problems.append(f"layer {key.layer} has no module {key.module!r}")
            continue
        base_layer = getattr(module, "base_layer", module)
        in_f, out_f = getattr(base_layer, "in_features", None), getattr(base_layer, "out_features", None)
        if in_f is None or out_f is None:
            problems.append(f"{key.module} in layer {key.layer} is not a linear layer")
            continue
        want = (config.r, in_f) if key.matrix == "A" else (out_f, config.r)
        if tuple(value.shape) != want:
            problems.append(f"layers.{key.layer}.{key.module}.lora_{key.matrix}: shape {tuple(value.shape)}, "
                            f"the base model needs {want}")
    if problems:
        # structural problems (missing layers/modules) first: they explain the shape ones
        uniq = sorted(dict.fromkeys(problems), key=lambda m: "shape" in m)
        more = f" (and {len(uniq) - 10} more)" if len(uniq) > 10 else ""
        raise AdapterFormatError(f"{where}: adapter does not fit the base model: " + "; ".join(uniq[:10]) + more)


def load_adapter(model: PyTorchModel, path: PathLike) -> None:
    """Replace the model's adapter (if any) with the one in ``path`` (PEFT or mlx-lm layout)."""
    from peft import get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict

    config, tensors, _raw = read_adapter(path)
    check_compatible(model, config, tensors, str(path))
    covered = sorted({k.layer for k in tensors})
    config = AdapterConfig(r=config.r, alpha=config.alpha, dropout=config.dropout,
                           target_modules=tuple(sorted({k.short for k in tensors})),
                           layers=tuple(covered) if len(covered) < model.num_layers else None)
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


class TorchAdapterManager:
    """AdapterManager protocol over the functions above."""

    def add_adapter(self, model: Model, config: AdapterConfig) -> None:
        add_adapter(ensure_torch_model(model), config)

    def save(self, model: Model, path: PathLike, *, format: str = "peft") -> Path:
        return save_adapter(ensure_torch_model(model), path, format=format)

    def load(self, model: Model, path: PathLike) -> None:
        load_adapter(ensure_torch_model(model), path)

    def convert(self, src: PathLike, dst: PathLike, *, to: str) -> Path:
        return convert_adapter(src, dst, to=to)
