"""The AdapterManager protocol once: a backend names its model check and its three adapter functions."""

from __future__ import annotations

from pathlib import Path
from typing import Generic, TypeVar

from mindprint_interfaces import AdapterConfig
from mindprint_interfaces.protocols import Model, PathLike

from .adapter_files import convert_adapter

M = TypeVar("M")


class KitAdapterManager(Generic[M]):
    """Add / save / load / convert LoRA adapters; conversion is the kit's (the same files on every backend)."""

    def _ensure(self, model: object) -> M:
        """The backend's own model, or BackendMismatchError ("Expected XModel, got YModel")."""
        raise NotImplementedError

    def _add(self, model: M, config: AdapterConfig) -> None:
        raise NotImplementedError

    def _save(self, model: M, path: PathLike, format: str) -> Path:
        raise NotImplementedError

    def _load(self, model: M, path: PathLike) -> None:
        raise NotImplementedError

    def add_adapter(self, model: Model, config: AdapterConfig) -> None:
        self._add(self._ensure(model), config)

    def save(self, model: Model, path: PathLike, *, format: str = "peft") -> Path:
        return self._save(self._ensure(model), path, format)

    def load(self, model: Model, path: PathLike) -> None:
        self._load(self._ensure(model), path)

    def convert(self, src: PathLike, dst: PathLike, *, to: str) -> Path:
        return convert_adapter(src, dst, to=to)


__all__ = ["KitAdapterManager"]
