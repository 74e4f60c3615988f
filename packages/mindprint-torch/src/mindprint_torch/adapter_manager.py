"""PyTorchAdapterManager: the AdapterManager protocol for torch models (the kit's, with PEFT underneath)."""

from __future__ import annotations

from pathlib import Path

from mindprint_interfaces import AdapterConfig
from mindprint_interfaces.protocols import PathLike
from mindprint_kit.adapter_manager import KitAdapterManager

from .adapters import add_adapter, load_adapter, save_adapter
from .model import PyTorchModel, ensure_torch_model


class PyTorchAdapterManager(KitAdapterManager[PyTorchModel]):
    def _ensure(self, model: object) -> PyTorchModel:
        return ensure_torch_model(model)

    def _add(self, model: PyTorchModel, config: AdapterConfig) -> None:
        add_adapter(model, config)

    def _save(self, model: PyTorchModel, path: PathLike, format: str) -> Path:
        return save_adapter(model, path, format=format)

    def _load(self, model: PyTorchModel, path: PathLike) -> None:
        load_adapter(model, path)


TorchAdapterManager = PyTorchAdapterManager  # 0.1 name, kept as an alias
