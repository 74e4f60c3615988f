"""mindprint-torch: the PyTorch backend (transformers + PEFT + TRL) for mindprint.

``create_backend("pytorch", device="cpu", dtype="float32")`` finds :class:`TorchBackend` through the
``mindprint.backends`` entry point (:mod:`.registration`). ``import mindprint_torch`` does not import
torch, so the registry can read the backend's spec cheaply; the classes import it on attribute access.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .adapters import TorchAdapterManager, convert_adapter
    from .backend import TorchBackend
    from .device import TorchDeviceManager
    from .dpo import TorchDPOTrainer
    from .merge import save_merged
    from .model import PyTorchModel, TorchModel, ensure_torch_model
    from .sft import TorchSFTTrainer

__version__ = "0.1.0"

_LAZY = {
    "TorchAdapterManager": ".adapters",
    "convert_adapter": ".adapters",
    "TorchBackend": ".backend",
    "TorchDeviceManager": ".device",
    "TorchDPOTrainer": ".dpo",
    "save_merged": ".merge",
    "PyTorchModel": ".model",
    "TorchModel": ".model",
    "ensure_torch_model": ".model",
    "TorchSFTTrainer": ".sft",
}

__all__ = [
    "PyTorchModel", "TorchAdapterManager", "TorchBackend", "TorchDPOTrainer", "TorchDeviceManager", "TorchModel",
    "TorchSFTTrainer", "convert_adapter", "ensure_torch_model", "save_merged",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mindprint_torch' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # later look-ups skip this hook
    return value
