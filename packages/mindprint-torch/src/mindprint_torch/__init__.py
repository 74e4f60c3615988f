"""mindprint-torch: the PyTorch backend (transformers + PEFT + TRL) for mindprint.

``create_backend("pytorch", device="cpu", dtype="float32")`` finds :class:`PyTorchBackend` through the
``mindprint.backends`` entry point (:mod:`.registration`). ``import mindprint_torch`` does not import
torch, so the registry can read the backend's spec cheaply; the classes import it on attribute access.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .adapter_manager import PyTorchAdapterManager, TorchAdapterManager
    from .adapters import convert_adapter
    from .backend import PyTorchBackend, TorchBackend
    from .device import PyTorchDeviceManager, TorchDeviceManager
    from .dpo import PyTorchDPOTrainer, TorchDPOTrainer
    from .merge import save_merged
    from .model import PyTorchModel, TorchModel, ensure_torch_model
    from .sft import PyTorchSFTTrainer, TorchSFTTrainer

__version__ = "0.1.0"

# One prefix for every class, as the error names them ("Expected PyTorchModel, got MLXModel"); the Torch* names
# are the 0.1 spellings, kept as aliases.
_LAZY = {
    "PyTorchAdapterManager": ".adapter_manager",
    "TorchAdapterManager": ".adapter_manager",
    "convert_adapter": ".adapters",
    "PyTorchBackend": ".backend",
    "TorchBackend": ".backend",
    "PyTorchDeviceManager": ".device",
    "TorchDeviceManager": ".device",
    "PyTorchDPOTrainer": ".dpo",
    "TorchDPOTrainer": ".dpo",
    "save_merged": ".merge",
    "PyTorchModel": ".model",
    "TorchModel": ".model",
    "ensure_torch_model": ".model",
    "PyTorchSFTTrainer": ".sft",
    "TorchSFTTrainer": ".sft",
}

__all__ = [
    "PyTorchAdapterManager", "PyTorchBackend", "PyTorchDPOTrainer", "PyTorchDeviceManager", "PyTorchModel",
    "PyTorchSFTTrainer", "TorchAdapterManager", "TorchBackend", "TorchDPOTrainer", "TorchDeviceManager", "TorchModel",
    "TorchSFTTrainer", "convert_adapter", "ensure_torch_model", "save_merged",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mindprint_torch' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # later look-ups skip this hook
    return value
