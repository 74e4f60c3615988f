"""Device and dtype resolution for the PyTorch backend.

``auto`` picks cuda > mps > cpu; ``gpu`` is an alias for "the accelerator" (cuda > mps) and fails
when there is none. ``dtype="auto"`` means fp32 on CPU, bf16 on CUDA when the card supports it
(else fp16) and fp16 on MPS. Asking for something the machine does not have raises
:class:`DeviceUnavailableError` with what *is* available, never a silent fallback.
"""

from __future__ import annotations

import resource
import sys

import torch

from mindprint_interfaces import DeviceUnavailableError
from mindprint_kit.placement import Placement

DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
_DTYPE_ALIASES = {"fp32": "float32", "fp16": "float16", "half": "float16", "bf16": "bfloat16", "float": "float32"}


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def available_devices() -> list[str]:
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices += ["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if _mps_available():
        devices.append("mps")
    return devices


def resolve_device(name: str) -> str:
    """Map ``auto``/``gpu``/``cpu``/``cuda[:N]``/``mps`` to an available torch device string."""
    key = name.strip().lower()
    have = available_devices()
    if key == "auto":
        return "cuda" if "cuda" in have else "mps" if "mps" in have else "cpu"
    if key == "gpu":
        if "cuda" in have:
            return "cuda"
        if "mps" in have:
            return "mps"
        raise DeviceUnavailableError(
            f"device 'gpu' requested but no GPU is available to PyTorch (no CUDA, no MPS); available: {', '.join(have)}. "
            "Use device='cpu' or 'auto'.")
    if key == "metal":
        raise DeviceUnavailableError("device 'metal' is the MLX backend's name for Apple GPUs; with PyTorch use 'mps'")
    if key == "cpu" or key in have:
        return key
    if key.startswith("cuda") or key == "mps":
        why = "CUDA is not available" if key.startswith("cuda") else "MPS is not available"
        if key.startswith("cuda") and torch.cuda.is_available():
            why = f"only {torch.cuda.device_count()} CUDA device(s) present"
        raise DeviceUnavailableError(f"device {name!r} is not available ({why}); available: {', '.join(have)}")
    raise DeviceUnavailableError(f"unknown device {name!r}; expected one of auto, cpu, cuda, cuda:N, mps, gpu")


def _bf16_supported(device: str) -> bool:
    if device.startswith("cuda"):
        return bool(torch.cuda.is_bf16_supported())
    return device == "cpu" or device == "mps"


def resolve_dtype(name: str, device: str) -> str:
    """Map a dtype name (or ``auto``) to ``float32``/``float16``/``bfloat16`` valid on ``device``."""
    key = _DTYPE_ALIASES.get(name.strip().lower(), name.strip().lower())
    if key == "auto":
        if device.startswith("cuda"):
            return "bfloat16" if _bf16_supported(device) else "float16"
        if device == "mps":
            return "float16"
        return "float32"
    if key not in DTYPES:
        raise DeviceUnavailableError(f"unsupported dtype {name!r}; expected one of auto, float32, float16, bfloat16")
    if key == "bfloat16" and not _bf16_supported(device):
        raise DeviceUnavailableError(
            f"dtype 'bfloat16' is not supported on {device} (this GPU has no bf16 support); use 'float16' or 'auto'")
    return key


class PyTorchDeviceManager(Placement):
    """Resolved device + dtype for one backend instance."""

    def __init__(self, device: str = "auto", dtype: str = "auto") -> None:
        self._device = resolve_device(device)
        if self._device == "cuda":
            from .distributed import local_cuda_device

            self._device = local_cuda_device()  # under DDP each process owns cuda:LOCAL_RANK
        self._dtype = resolve_dtype(dtype, self._device)

    @property
    def torch_device(self) -> torch.device:
        return torch.device(self._device)

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self._dtype]

    def available_devices(self) -> list[str]:
        return available_devices()

    def memory_info(self) -> dict[str, float]:
        """Bytes. CPU: process RSS now (``used``) and peak RSS (``peak``); CUDA/MPS: allocator figures."""
        if self._device.startswith("cuda"):
            dev = torch.device(self._device)
            free, total = torch.cuda.mem_get_info(dev)
            return {"used": float(torch.cuda.memory_allocated(dev)), "peak": float(torch.cuda.max_memory_allocated(dev)),
                    "reserved": float(torch.cuda.memory_reserved(dev)), "free": float(free), "total": float(total)}
        if self._device == "mps":
            return {"used": float(torch.mps.current_allocated_memory()), "driver": float(torch.mps.driver_allocated_memory())}
        return {"used": float(_rss_bytes()), "peak": float(_peak_rss_bytes())}

    def synchronize(self) -> None:
        if self._device.startswith("cuda"):
            torch.cuda.synchronize(torch.device(self._device))
        elif self._device == "mps":
            torch.mps.synchronize()

    def __repr__(self) -> str:
        return f"PyTorchDeviceManager(device={self._device!r}, dtype={self._dtype!r})"


def _peak_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # macOS reports bytes, Linux KiB


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            pages = int(fh.read().split()[1])
        import os

        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return _peak_rss_bytes()


TorchDeviceManager = PyTorchDeviceManager  # 0.1 name, kept as an alias
