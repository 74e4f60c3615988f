"""MLXAdapterManager: the AdapterManager protocol for MLX models (the kit's, over mlx-lm's LoRA layers)."""

from __future__ import annotations

from pathlib import Path

from mindprint_interfaces import AdapterConfig
from mindprint_interfaces.protocols import PathLike
from mindprint_kit.adapter_manager import KitAdapterManager

from .adapters import load_adapter, save_adapter
from .model import MLXModel, ensure_mlx_model


class MLXAdapterManager(KitAdapterManager[MLXModel]):
    def _ensure(self, model: object) -> MLXModel:
        return ensure_mlx_model(model)

    def _add(self, model: MLXModel, config: AdapterConfig) -> None:
        model.add_adapter(config)

    def _save(self, model: MLXModel, path: PathLike, format: str) -> Path:
        return save_adapter(model, path, format=format)

    def _load(self, model: MLXModel, path: PathLike) -> None:
        load_adapter(model, path)
