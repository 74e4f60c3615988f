"""Static proof (checked by mypy, never executed) that the classes satisfy the mindprint protocols."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mindprint_interfaces import AdapterManager, Backend, BackendConfig, DeviceManager, Model, Trainer

    from .adapter_manager import PyTorchAdapterManager
    from .backend import PyTorchBackend
    from .device import PyTorchDeviceManager
    from .dpo import PyTorchDPOTrainer
    from .model import PyTorchModel
    from .sft import PyTorchSFTTrainer

    _backend: Backend = PyTorchBackend(BackendConfig("pytorch"))
    _model: Model = PyTorchModel(None, None)
    _sft: Trainer = PyTorchSFTTrainer(_model_impl := PyTorchModel(None, None), {})
    _dpo: Trainer = PyTorchDPOTrainer(_model_impl, {})
    _devices: DeviceManager = PyTorchDeviceManager()
    _adapters: AdapterManager = PyTorchAdapterManager()
