"""mindprint-mlx: the MLX backend (mlx + mlx-lm; Metal on Apple silicon, CPU on Linux).

``import mindprint_mlx`` works without mlx installed; creating :class:`MLXBackend` imports mlx
(and raises ``mlx-lm not installed: pip install ...`` when it is missing). The other classes are
imported lazily on attribute access.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .backend import MLXBackend

if TYPE_CHECKING:
    from .adapter_manager import MLXAdapterManager
    from .adapters import convert_adapter
    from .device import MLXDeviceManager
    from .dpo import MLXDPOTrainer
    from .model import MLXModel
    from .sft import MLXSFTTrainer

__version__ = "0.1.0"

_LAZY = {
    "MLXModel": ".model",
    "MLXDeviceManager": ".device",
    "MLXAdapterManager": ".adapter_manager",
    "convert_adapter": ".adapters",
    "MLXSFTTrainer": ".sft",
    "MLXDPOTrainer": ".dpo",
}

__all__ = ["MLXAdapterManager", "MLXBackend", "MLXDPOTrainer", "MLXDeviceManager", "MLXModel", "MLXSFTTrainer",
           "convert_adapter"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mindprint_mlx' has no attribute {name!r}")
    from ._imports import require_mlx

    require_mlx()
    return getattr(importlib.import_module(module, __name__), name)
