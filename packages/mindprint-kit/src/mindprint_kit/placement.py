"""The device and dtype names a backend object resolved once (device managers and models share them)."""

from __future__ import annotations


class Placement:
    """Read-only ``device`` / ``dtype`` names ("cpu", "cuda:1", "metal"; "float32", "bfloat16"...)."""

    _device: str
    _dtype: str

    @property
    def device(self) -> str:
        return self._device

    @property
    def dtype(self) -> str:
        return self._dtype
