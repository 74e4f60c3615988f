"""MLXAdapterManager: the AdapterManager protocol for MLX models."""

from __future__ import annotations

from pathlib import Path

from mindprint_interfaces import AdapterConfig
from mindprint_interfaces.protocols import Model, PathLike
from mindprint_kit.adapter_files import convert_adapter

from .adapters import load_adapter, save_adapter
from .model import ensure_mlx_model


class MLXAdapterManager:
    """Add / save / load / convert LoRA adapters of MLX models."""

    def add_adapter(self, model: Model, config: AdapterConfig) -> None:
        ensure_mlx_model(model).add_adapter(config)

    def save(self, model: Model, path: PathLike, *, format: str = "peft") -> Path:
        return save_adapter(ensure_mlx_model(model), path, format=format)

    def load(self, model: Model, path: PathLike) -> None:
        load_adapter(ensure_mlx_model(model), path)

    def convert(self, src: PathLike, dst: PathLike, *, to: str) -> Path:
        return convert_adapter(src, dst, to=to)
