"""PyTorchAdapterManager: the AdapterManager protocol for torch models."""

from __future__ import annotations

from pathlib import Path

from mindprint_interfaces import AdapterConfig
from mindprint_interfaces.protocols import Model, PathLike
from mindprint_kit.adapter_files import convert_adapter

from .adapters import add_adapter, load_adapter, save_adapter
from .model import ensure_torch_model


class PyTorchAdapterManager:
    """Add / save / load / convert LoRA adapters of torch models (PEFT underneath)."""

    def add_adapter(self, model: Model, config: AdapterConfig) -> None:
        add_adapter(ensure_torch_model(model), config)

    def save(self, model: Model, path: PathLike, *, format: str = "peft") -> Path:
        return save_adapter(ensure_torch_model(model), path, format=format)

    def load(self, model: Model, path: PathLike) -> None:
        load_adapter(ensure_torch_model(model), path)

    def convert(self, src: PathLike, dst: PathLike, *, to: str) -> Path:
        return convert_adapter(src, dst, to=to)


TorchAdapterManager = PyTorchAdapterManager  # 0.1 name, kept as an alias
