"""Static proof (checked by mypy, never executed) that the classes satisfy the mindprint protocols."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mindprint_interfaces import AdapterManager, Backend, BackendConfig, DeviceManager, Model, Trainer

    from .adapter_manager import TorchAdapterManager
    from .backend import TorchBackend
    from .device import TorchDeviceManager
    from .dpo import TorchDPOTrainer
    from .model import PyTorchModel
    from .sft import TorchSFTTrainer

    _backend: Backend = TorchBackend(BackendConfig("pytorch"))
    _model: Model = PyTorchModel(None, None)
    _sft: Trainer = TorchSFTTrainer(_model_impl := PyTorchModel(None, None), {})
    _dpo: Trainer = TorchDPOTrainer(_model_impl, {})
    _devices: DeviceManager = TorchDeviceManager()
    _adapters: AdapterManager = TorchAdapterManager()
