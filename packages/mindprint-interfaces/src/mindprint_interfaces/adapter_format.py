"""The one adapter format (PEFT layout) and mlx-lm's layout: names and config, no tensors.

Canonical on disk (PEFT): ``adapter_config.json`` + ``adapter_model.safetensors`` with keys
``base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.weight`` (r, in) and
``...lora_B.weight`` (out, r); scale = lora_alpha / r.

mlx-lm: ``adapter_config.json`` (``lora_parameters: {rank, scale, dropout, keys}``,
``num_layers``) + ``adapters.safetensors`` with keys ``model.layers.{i}.self_attn.q_proj.lora_a``
(in, r) and ``lora_b`` (r, out); ``scale`` is a plain multiplier.

Conversion is exact: transpose both matrices, alpha = scale * r. The tensor work lives in
each backend (it needs numpy/torch); this module only maps names and configs so both
backends agree on them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .architectures import MODULE_PATHS as MODULE_PATHS  # re-exported: the 0.1 name
from .architectures import module_path
from .configs import DEFAULT_TARGET_MODULES, AdapterConfig
from .errors import AdapterFormatError

PEFT_CONFIG = "adapter_config.json"
PEFT_WEIGHTS = "adapter_model.safetensors"
MLX_WEIGHTS = "adapters.safetensors"

AdapterLayout = Literal["peft", "mlx"]

# Target name -> module path inside a decoder layer: the family table's (architectures.py).
_PEFT_KEY = re.compile(r"^base_model\.model\.model\.layers\.(\d+)\.(.+)\.lora_([AB])\.weight$")
_MLX_KEY = re.compile(r"^model\.layers\.(\d+)\.(.+)\.lora_([ab])$")


@dataclass(frozen=True)
class LoraKey:
    layer: int
    module: str  # e.g. "self_attn.q_proj"
    matrix: Literal["A", "B"]

    @property
    def short(self) -> str:
        return self.module.rsplit(".", 1)[-1]

    def peft(self) -> str:
        return f"base_model.model.model.layers.{self.layer}.{self.module}.lora_{self.matrix}.weight"

    def peft_parameter(self, adapter_name: str = "default") -> str:
        """The live parameter's name inside a PeftModel (``named_parameters()``), e.g. for gradients."""
        return f"base_model.model.model.layers.{self.layer}.{self.module}.lora_{self.matrix}.{adapter_name}.weight"

    def mlx(self) -> str:
        return f"model.layers.{self.layer}.{self.module}.lora_{self.matrix.lower()}"


def parse_peft_key(key: str) -> LoraKey:
    m = _PEFT_KEY.match(key)
    if not m:
        raise AdapterFormatError(f"unexpected PEFT adapter key {key!r} (expected base_model.model.model.layers.N.<module>.lora_A.weight)")
    return LoraKey(int(m.group(1)), m.group(2), "A" if m.group(3) == "A" else "B")


def parse_mlx_key(key: str) -> LoraKey:
    m = _MLX_KEY.match(key)
    if not m:
        raise AdapterFormatError(f"unexpected mlx-lm adapter key {key!r} (expected model.layers.N.<module>.lora_a)")
    return LoraKey(int(m.group(1)), m.group(2), "A" if m.group(3) == "a" else "B")


def detect_layout(path: str | Path) -> AdapterLayout:
    """Which layout an adapter directory uses; raises AdapterFormatError naming what is missing."""
    p = Path(path)
    if not p.is_dir():
        raise AdapterFormatError(f"{p}: adapter directory not found")
    if (p / PEFT_WEIGHTS).is_file():
        if not (p / PEFT_CONFIG).is_file():
            raise AdapterFormatError(f"{p}: {PEFT_WEIGHTS} present but {PEFT_CONFIG} missing")
        return "peft"
    if (p / MLX_WEIGHTS).is_file():
        if not (p / PEFT_CONFIG).is_file():
            raise AdapterFormatError(f"{p}: {MLX_WEIGHTS} present but {PEFT_CONFIG} missing")
        return "mlx"
    raise AdapterFormatError(f"{p}: neither {PEFT_WEIGHTS} (PEFT) nor {MLX_WEIGHTS} (mlx-lm) found")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise AdapterFormatError(f"{path}: cannot read adapter config: {exc}") from None
    if not isinstance(data, dict):
        raise AdapterFormatError(f"{path}: adapter config must be a JSON object")
    return data


def read_adapter_config(path: str | Path, layer_indices: list[int] | None = None) -> AdapterConfig:
    """AdapterConfig from either layout's ``adapter_config.json``.

    ``layer_indices`` (from the weight keys) fills ``layers`` for mlx-lm configs, which only
    store ``num_layers`` (the last N layers).
    """
    p = Path(path)
    layout = detect_layout(p)
    cfg = _read_json(p / PEFT_CONFIG)
    try:
        if layout == "peft":
            r = int(cfg["r"])
            alpha = float(cfg["lora_alpha"])
            targets = cfg["target_modules"]
            if isinstance(targets, str):
                raise AdapterFormatError(f"{p / PEFT_CONFIG}: target_modules as a regex is not supported; list the modules")
            layers = cfg.get("layers_to_transform")
            if isinstance(layers, int):
                layers = [layers]
            return AdapterConfig(r=r, alpha=alpha, dropout=float(cfg.get("lora_dropout", 0.0)),
                                 target_modules=tuple(sorted(str(t) for t in targets)),
                                 layers=tuple(layers) if layers else None)
        params = cfg["lora_parameters"]
        rank = int(params["rank"])
        keys = params.get("keys") or [module_path(t) for t in DEFAULT_TARGET_MODULES]
        return AdapterConfig(r=rank, alpha=float(params["scale"]) * rank, dropout=float(params.get("dropout", 0.0)),
                             target_modules=tuple(sorted(str(k).rsplit(".", 1)[-1] for k in keys)),
                             layers=tuple(sorted(layer_indices)) if layer_indices is not None else None)
    except (KeyError, TypeError, ValueError) as exc:
        raise AdapterFormatError(f"{p / PEFT_CONFIG}: missing or invalid field {exc}") from None


def peft_config_dict(config: AdapterConfig, base_model_name_or_path: str = "") -> dict[str, Any]:
    """An ``adapter_config.json`` that plain ``peft.PeftModel.from_pretrained`` accepts."""
    return {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_model_name_or_path,
        "r": config.r,
        "lora_alpha": config.alpha,
        "lora_dropout": config.dropout,
        "target_modules": sorted(config.target_modules),
        "layers_to_transform": list(config.layers) if config.layers is not None else None,
        "bias": "none",
        "fan_in_fan_out": False,
        "inference_mode": True,
        "init_lora_weights": True,
        "modules_to_save": None,
        "use_dora": False,
        "use_rslora": False,
    }


def mlx_config_dict(config: AdapterConfig, num_model_layers: int) -> dict[str, Any]:
    """An mlx-lm ``adapter_config.json`` (as written by ``mlx_lm.lora``)."""
    layers = sorted(config.layers) if config.layers is not None else list(range(num_model_layers))
    if layers != list(range(num_model_layers - len(layers), num_model_layers)):
        raise AdapterFormatError(
            f"mlx-lm adapters cover the last N layers only; layers {layers} cannot be written in mlx-lm layout")
    return {
        "fine_tune_type": "lora",
        "num_layers": len(layers),
        "lora_parameters": {
            "rank": config.r,
            "scale": config.scale,
            "dropout": config.dropout,
            "keys": [module_path(t) for t in sorted(config.target_modules)],
        },
    }
