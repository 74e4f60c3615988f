"""Adapter directories on disk, once for every backend: read, write and convert, in numpy.

Two layouts (names and config dicts in :mod:`mindprint_interfaces.adapter_format`):

* PEFT (canonical): ``adapter_model.safetensors`` with ``lora_A`` (r, in) / ``lora_B`` (out, r);
* mlx-lm: ``adapters.safetensors`` with ``lora_a`` (in, r) / ``lora_b`` (r, out).

In memory an adapter is :data:`LoraWeights`: ``(layer, module path) -> (A, B)`` in PEFT orientation,
fp32 numpy. Converting is a transpose and nothing else, so a round trip is bit-exact. A backend only
turns its live LoRA layers into :data:`LoraWeights` and back.
"""

from __future__ import annotations

import json
import shutil
import struct
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

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

FORMATS = ("peft", "mlx")
Site = tuple[int, str]  # (layer index, module path inside the layer, e.g. "self_attn.q_proj")
LoraWeights = dict[Site, tuple[np.ndarray, np.ndarray]]  # A (r, in), B (out, r): PEFT orientation, fp32
# PEFT options that change the maths of an adapter; we refuse them rather than load them as plain LoRA.
_UNSUPPORTED_PEFT = ("use_dora", "use_rslora")


def check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise AdapterFormatError(f"unknown adapter format {fmt!r}; use 'peft' (canonical) or 'mlx' (mlx-lm)")


def _read_raw_safetensors(file: Path) -> dict[str, np.ndarray]:
    """fp32 copies of every tensor, for files numpy's safetensors reader refuses (bfloat16, written by
    PEFT for a bf16 model): bf16 is the top half of an fp32, so widening is a shift."""
    data = file.read_bytes()
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + header_len])
    body = memoryview(data)[8 + header_len:]
    out: dict[str, np.ndarray] = {}
    kinds = {"F32": np.float32, "F16": np.float16, "F64": np.float64}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        raw = body[begin:end]
        if info["dtype"] == "BF16":
            array = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        elif info["dtype"] in kinds:
            array = np.frombuffer(raw, dtype=np.dtype(kinds[info["dtype"]]).newbyteorder("<")).astype(np.float32)
        else:
            raise AdapterFormatError(f"{file}: tensor {name} has dtype {info['dtype']}; LoRA weights are floats")
        out[name] = array.reshape(info["shape"])
    return out


def read_tensors(file: Path) -> dict[str, np.ndarray]:
    """Every tensor of a safetensors file as fp32 numpy (any float dtype, bfloat16 included)."""
    try:
        try:
            return {k: v.astype(np.float32) for k, v in load_file(str(file)).items()}
        except TypeError:  # numpy has no bfloat16
            return _read_raw_safetensors(file)
    except AdapterFormatError:
        raise
    except Exception as exc:  # safetensors raises several types for a corrupt file
        raise AdapterFormatError(f"{file}: cannot read adapter weights: {exc}") from None


def read_adapter(path: str | Path) -> tuple[AdapterConfig, LoraWeights]:
    """Either layout -> (AdapterConfig, PEFT-oriented fp32 matrices); every inconsistency is named."""
    p = Path(path)
    layout = detect_layout(p)
    file = p / (PEFT_WEIGHTS if layout == "peft" else MLX_WEIGHTS)
    if layout == "peft":
        raw = json.loads((p / PEFT_CONFIG).read_text(encoding="utf-8"))
        unsupported = [k for k in _UNSUPPORTED_PEFT if raw.get(k)]
        if raw.get("bias", "none") != "none":
            unsupported.append(f"bias={raw['bias']!r}")
        if raw.get("modules_to_save"):
            unsupported.append("modules_to_save")
        if unsupported:
            raise AdapterFormatError(f"{p}: unsupported PEFT adapter options: {', '.join(unsupported)}")
    halves: dict[Site, dict[str, np.ndarray]] = {}
    problems: list[str] = []
    for key, value in read_tensors(file).items():
        lk = parse_peft_key(key) if layout == "peft" else parse_mlx_key(key)
        if value.ndim != 2:
            problems.append(f"{lk.peft()} is not a matrix (shape {tuple(value.shape)})")
            continue
        if not np.isfinite(value).all():
            problems.append(f"{lk.peft()} holds non-finite values (NaN/inf: the run that wrote it diverged)")
        matrix = value.T if layout == "mlx" else value  # lora_a (in, r) -> A (r, in); lora_b (r, out) -> B (out, r)
        halves.setdefault((lk.layer, lk.module), {})[lk.matrix] = np.ascontiguousarray(matrix)
    if not halves and not problems:
        raise AdapterFormatError(f"{file}: no LoRA tensors")
    weights: LoraWeights = {}
    for site, pair in sorted(halves.items()):
        if set(pair) != {"A", "B"}:
            have = "A" if "A" in pair else "B"
            problems.append(f"layer {site[0]} {site[1]} has lora_{have} only")
            continue
        weights[site] = (pair["A"], pair["B"])
    layers = sorted({layer for layer, _ in weights})
    config = read_adapter_config(p, layers)
    if config.layers is None and layout == "peft" and layers != list(range(len(layers))):
        config = config.replace(layers=tuple(layers))
    for (layer, module), (a, b) in weights.items():
        if a.shape[0] != config.r or b.shape[1] != config.r:
            problems.append(f"layers.{layer}.{module} has rank {a.shape[0]}/{b.shape[1]} but the config says "
                            f"r={config.r}")
    if problems:
        raise AdapterFormatError(f"{p}: inconsistent adapter: " + "; ".join(problems[:10]))
    return config, weights


def base_model_of(path: str | Path) -> str:
    """``base_model_name_or_path`` recorded in a PEFT adapter ('' when absent or not PEFT)."""
    try:
        raw = json.loads((Path(path) / PEFT_CONFIG).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return ""
    return str(raw.get("base_model_name_or_path") or "") if isinstance(raw, dict) else ""


def write_adapter(path: str | Path, config: AdapterConfig, weights: Mapping[Site, tuple[np.ndarray, np.ndarray]], *,
                  format: str = "peft", num_model_layers: int | None = None, base_model: str = "",
                  base: Mapping[str, Any] | None = None) -> Path:
    """Write atomically in ``format``. The mlx-lm layout covers the last N layers of a model, so it needs
    ``num_model_layers`` (default: the highest adapted layer + 1)."""
    check_format(format)
    tensors: dict[str, np.ndarray] = {}
    for (layer, module), (a, b) in weights.items():
        for matrix, value in (("A", a), ("B", b)):
            key = LoraKey(layer, module, "A" if matrix == "A" else "B")
            if format == "peft":
                tensors[key.peft()] = np.ascontiguousarray(value, dtype=np.float32)
            else:
                tensors[key.mlx()] = np.ascontiguousarray(np.asarray(value).T, dtype=np.float32)
    if format == "peft":
        cfg_dict = peft_config_dict(config, base_model)
    else:
        n = num_model_layers if num_model_layers is not None else max(layer for layer, _ in weights) + 1
        if config.layers is None:
            config = config.replace(layers=tuple(sorted({layer for layer, _ in weights})))
        cfg_dict = mlx_config_dict(config, n)
    target = Path(path)
    with atomic_directory(target) as tmp:
        save_file(tensors, str(tmp / (PEFT_WEIGHTS if format == "peft" else MLX_WEIGHTS)), metadata={"format": "pt"})
        if base is not None:
            cfg_dict = {**cfg_dict, BASE_KEY: dict(base)}
        (tmp / PEFT_CONFIG).write_text(json.dumps(cfg_dict, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return target


def convert_adapter(src: str | Path, dst: str | Path, *, to: str, num_model_layers: int | None = None) -> Path:
    """Convert an adapter directory between the PEFT and mlx-lm layouts (exact: transposes only).

    The source is always read and checked first; to its own layout the files are copied verbatim.
    """
    check_format(to)
    config, weights = read_adapter(src)
    if to == detect_layout(src):
        with atomic_directory(dst) as tmp:
            for f in Path(src).iterdir():
                if f.is_file():
                    shutil.copy2(f, tmp / f.name)
        return Path(dst)
    return write_adapter(dst, config, weights, format=to, num_model_layers=num_model_layers,
                         base_model=base_model_of(src) if to == "peft" else "", base=recorded_base(src))


def adapter_config_for(config: AdapterConfig, weights: Mapping[Site, Any], num_model_layers: int) -> AdapterConfig:
    """The config a loaded adapter really has: its modules and layers as found in the weights."""
    layers = sorted({layer for layer, _ in weights})
    return config.replace(target_modules=tuple(sorted({m.rsplit(".", 1)[-1] for _, m in weights})),
                          layers=None if layers == list(range(num_model_layers)) else tuple(layers))


ModuleShape = Callable[[int, str], "tuple[int, int] | str"]


def check_fits(weights: Mapping[Site, tuple[Any, Any]], *, num_layers: int, module_shape: ModuleShape,
               where: str, base: str = "") -> None:
    """Raise AdapterFormatError naming every way the adapter does not fit the model.

    ``module_shape(layer, module)`` is the backend's answer: ``(in, out)`` of that linear layer, or a
    sentence saying why there is none. Structural problems are listed before shape ones (they explain them).
    """
    problems: list[str] = []
    for (layer, module), (a, b) in sorted(weights.items()):
        if layer >= num_layers:
            problems.append(f"layer {layer} does not exist (the base model has {num_layers} layers)")
            continue
        shape = module_shape(layer, module)
        if isinstance(shape, str):
            problems.append(f"layer {layer}: {shape}")
            continue
        in_dim, out_dim = shape
        if a.shape[1] != in_dim or b.shape[0] != out_dim:
            problems.append(f"layers.{layer}.{module}: adapter expects (in={a.shape[1]}, out={b.shape[0]}), "
                            f"the base model has (in={in_dim}, out={out_dim})")
    if problems:
        uniq = sorted(dict.fromkeys(problems), key=lambda m: "expects" in m)
        more = f" (and {len(uniq) - 10} more)" if len(uniq) > 10 else ""
        on = f" {base}" if base else ""
        raise AdapterFormatError(f"{where}: adapter does not fit the base model{on}: " + "; ".join(uniq[:10]) + more)


# -- the base an adapter was trained on (#20) ------------------------------------------------------------------
BASE_KEY = "mindprint_base"  # extra key of adapter_config.json (PEFT ignores keys it does not know)
ALLOW_OTHER_BASE_ENV = "MINDPRINT_ALLOW_OTHER_BASE"  # =1: load an adapter onto a base it was not trained on
_SAMPLES = 8  # values per modified weight kept as its fingerprint
_SAMPLE_RTOL = 2e-2  # bf16 vs fp32 copies of the same base agree to ~4e-3


def base_record(architecture: str, num_layers: int, weights: Mapping[Site, Any]) -> dict[str, Any]:
    """What an adapter records about its base: architecture, layer count, and for every weight it modifies
    its shape (out, in) and a fingerprint (values at fixed positions, fp32)."""
    modules: dict[str, Any] = {}
    for (layer, module), w in sorted(weights.items()):
        array = np.asarray(w, dtype=np.float32)
        flat = array.reshape(-1)
        idx = np.linspace(0, flat.size - 1, num=min(_SAMPLES, flat.size)).astype(np.int64)
        modules[f"layers.{layer}.{module}"] = {"shape": list(array.shape),
                                               "sample": [float(v) for v in flat[idx]]}
    return {"architecture": architecture, "num_layers": int(num_layers), "modules": modules}


def add_base_record(directory: Path, record: Mapping[str, Any]) -> None:
    """Add the base record to ``directory/adapter_config.json`` (written by PEFT or by us)."""
    file = directory / PEFT_CONFIG
    raw = json.loads(file.read_text(encoding="utf-8"))
    raw[BASE_KEY] = dict(record)
    file.write_text(json.dumps(raw, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def recorded_base(path: str | Path) -> dict[str, Any] | None:
    try:
        raw = json.loads((Path(path) / PEFT_CONFIG).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    record = raw.get(BASE_KEY) if isinstance(raw, dict) else None
    return record if isinstance(record, dict) else None


def check_base(path: str | Path, actual: Mapping[str, Any], *, allow_other_base: bool | None = None) -> None:
    """Raise AdapterFormatError naming how the base ``actual`` differs from the one the adapter recorded.

    Adapters without a record (from elsewhere) are not checked. ``allow_other_base`` (default: the
    ``MINDPRINT_ALLOW_OTHER_BASE=1`` environment variable) loads anyway."""
    import os

    recorded = recorded_base(path)
    if recorded is None:
        return
    if allow_other_base is None:
        allow_other_base = os.environ.get(ALLOW_OTHER_BASE_ENV, "") not in ("", "0")
    if allow_other_base:
        return
    problems: list[str] = []
    if recorded.get("architecture") != actual.get("architecture"):
        problems.append(f"architecture {recorded.get('architecture')} (trained on) vs {actual.get('architecture')}")
    if recorded.get("num_layers") != actual.get("num_layers"):
        problems.append(f"{recorded.get('num_layers')} layers (trained on) vs {actual.get('num_layers')}")
    mine, theirs = recorded.get("modules") or {}, actual.get("modules") or {}
    different = []
    for name, info in mine.items():
        other = theirs.get(name)
        if other is None:
            continue
        if list(info.get("shape", [])) != list(other["shape"]):
            problems.append(f"{name} shape {info.get('shape')} vs {other['shape']}")
            continue
        a, b = np.asarray(info.get("sample", []), np.float64), np.asarray(other["sample"], np.float64)
        if a.shape != b.shape or not np.allclose(a, b, rtol=_SAMPLE_RTOL, atol=1e-3 * max(1e-6, np.abs(a).max(initial=0))):
            different.append(name)
    if different:
        problems.append(f"the weights it modifies differ ({', '.join(different[:3])}"
                        f"{f' and {len(different) - 3} more' if len(different) > 3 else ''}): another base model")
    if problems:
        raise AdapterFormatError(f"{path}: adapter was trained on another base model: " + "; ".join(problems[:6])
                                 + f"; set {ALLOW_OTHER_BASE_ENV}=1 to load it anyway")
