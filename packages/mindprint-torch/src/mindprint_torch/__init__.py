"""mindprint-torch: the PyTorch backend (transformers + PEFT + TRL) for mindprint.

``create_backend("pytorch", device="cpu", dtype="float32")`` finds :class:`TorchBackend` through the
``mindprint.backends`` entry point.
"""

from .adapter_manager import TorchAdapterManager
from .adapters import convert_adapter
from .backend import TorchBackend
from .device import TorchDeviceManager
from .dpo import TorchDPOTrainer
from .merge import save_merged
from .model import PyTorchModel, TorchModel, ensure_torch_model
from .sft import TorchSFTTrainer

__version__ = "0.1.0"

__all__ = [
    "PyTorchModel", "TorchAdapterManager", "TorchBackend", "TorchDPOTrainer", "TorchDeviceManager", "TorchModel",
    "TorchSFTTrainer", "convert_adapter", "ensure_torch_model", "save_merged",
]
