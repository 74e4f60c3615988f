"""Static proof (mypy only, never executed) that the MLX classes satisfy the shared protocols."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mindprint_interfaces import (
        AdapterManager,
        Backend,
        BackendConfig,
        DeviceManager,
        DPOConfig,
        Model,
        SFTConfig,
        Tokenizer,
        Trainer,
    )

    from .adapter_manager import MLXAdapterManager
    from .backend import MLXBackend
    from .device import MLXDeviceManager
    from .dpo import MLXDPOTrainer
    from .model import MLXModel
    from .sft import MLXSFTTrainer

    _b: Backend = MLXBackend(BackendConfig("mlx"))
    _d: DeviceManager = MLXDeviceManager()
    _a: AdapterManager = MLXAdapterManager()
    _m: Model = _b.load_model("model-dir")
    _mm: MLXModel = MLXBackend(BackendConfig("mlx")).load_model("model-dir")
    _m2: Model = _mm
    _t: Tokenizer = _mm.tokenizer
    _s: Trainer = MLXSFTTrainer(_mm, SFTConfig())
    _p: Trainer = MLXDPOTrainer(_mm, DPOConfig())
