"""Device and dtype resolution for MLX (unified memory: Metal on Apple silicon, CPU elsewhere)."""

from __future__ import annotations

import os
import warnings
from typing import Any

import mlx.core as mx

from mindprint_interfaces import DeviceUnavailableError
from mindprint_kit.placement import Placement

_DTYPES: dict[str, Any] = {"float32": mx.float32, "float16": mx.float16, "bfloat16": mx.bfloat16}


def metal_available() -> bool:
    try:
        return bool(mx.metal.is_available())
    except AttributeError:  # pragma: no cover - builds without the metal module
        return False


class MLXDeviceManager(Placement):
    """``auto``/``gpu`` -> Metal where present, else CPU; ``metal``/``mps`` require Metal; ``cuda`` is not MLX's.

    ``dtype="auto"`` is float32 on the CPU (exact parity with torch) and bfloat16 on Metal.
    """

    def __init__(self, device: str = "auto", dtype: str = "auto") -> None:
        self._device = self._resolve_device(device)
        if dtype == "auto":
            dtype = "bfloat16" if self._device == "metal" else "float32"
        if dtype not in _DTYPES:
            raise DeviceUnavailableError(f"unsupported dtype {dtype!r} for MLX; use one of {', '.join(_DTYPES)}")
        self._dtype = dtype
        mx.set_default_device(mx.gpu if self._device == "metal" else mx.cpu)

    @staticmethod
    def _resolve_device(device: str) -> str:
        name = device.lower()
        if name in ("auto", "gpu"):
            if metal_available():
                return "metal"
            if name == "gpu":
                warnings.warn("device 'gpu': Metal is not available on this machine, MLX runs on the CPU",
                              RuntimeWarning, stacklevel=3)
            return "cpu"
        if name == "cpu":
            return "cpu"
        if name in ("metal", "mps"):
            if not metal_available():
                raise DeviceUnavailableError(f"device {device!r}: Metal is not available on this machine "
                                             "(MLX on Linux runs on the CPU; use device='cpu' or 'auto')")
            return "metal"
        if name.startswith("cuda"):
            raise DeviceUnavailableError(f"device {device!r}: the MLX backend does not use CUDA here; "
                                         "use the pytorch backend for CUDA, or device='auto'")
        raise DeviceUnavailableError(f"unknown device {device!r} for MLX (auto, cpu, gpu, metal)")

    @property
    def mx_dtype(self) -> Any:
        return _DTYPES[self._dtype]

    def available_devices(self) -> list[str]:
        return ["metal", "cpu"] if metal_available() else ["cpu"]

    def memory_info(self) -> dict[str, float]:
        """Bytes: MLX's active/peak/cache allocations and the total memory it can use (unified)."""
        info = {
            "used": float(mx.get_active_memory()),
            "peak": float(mx.get_peak_memory()),
            "cache": float(mx.get_cache_memory()),
        }
        total = 0.0
        if self._device == "metal":
            total = float(mx.metal.device_info().get("memory_size", 0))
        if not total:
            try:
                total = float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
            except (ValueError, OSError, AttributeError):  # pragma: no cover
                total = 0.0
        info["total"] = total
        return info

    def synchronize(self) -> None:
        mx.synchronize()
