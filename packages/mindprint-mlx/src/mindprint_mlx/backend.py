"""MLXBackend: the entry point ``mindprint.backends: mlx``. Importing this module does not import mlx."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mindprint_interfaces import BackendConfig, DPOConfig, SFTConfig
from mindprint_interfaces.protocols import Model, PathLike, Trainer, TrainerCallback
from mindprint_kit.methods import create_trainer

from ._imports import require_mlx

if TYPE_CHECKING:
    from .adapter_manager import MLXAdapterManager
    from .device import MLXDeviceManager
    from .dpo import MLXDPOTrainer
    from .model import MLXModel
    from .sft import MLXSFTTrainer


def ensure_mlx_model(model: object) -> "MLXModel":
    """Return ``model`` if it is an MLXModel, else raise BackendMismatchError ("Expected MLXModel, got X")."""
    from .model import ensure_mlx_model as ensure

    return ensure(model)


class MLXBackend:
    """MLX + mlx-lm. ``MLXBackend(BackendConfig("mlx", device="auto", dtype="auto", seed=42))``."""

    name = "mlx"

    def __init__(self, config: BackendConfig | None = None) -> None:
        self.config = config if config is not None else BackendConfig(backend_type="mlx")
        core, _ = require_mlx()  # 'mlx-lm not installed: ...' when missing
        from .adapter_manager import MLXAdapterManager
        from .device import MLXDeviceManager

        self._device_manager = MLXDeviceManager(self.config.device, self.config.dtype)
        self._adapter_manager = MLXAdapterManager()
        core.random.seed(self.config.seed)

    @property
    def device_manager(self) -> "MLXDeviceManager":
        return self._device_manager

    @property
    def adapter_manager(self) -> "MLXAdapterManager":
        return self._adapter_manager

    def load_model(self, model_path: PathLike, tokenizer_path: PathLike | None = None,
                   adapter_path: PathLike | None = None) -> "MLXModel":
        from .loading import load_hf_directory
        from .model import MLXModel

        mpath = Path(model_path).expanduser()
        tpath = Path(tokenizer_path).expanduser() if tokenizer_path is not None else None
        module, tokenizer, hf_config = load_hf_directory(mpath, tpath, self._device_manager.mx_dtype)
        model = MLXModel(module, tokenizer, model_path=mpath, tokenizer_path=tpath or mpath, hf_config=hf_config,
                         device=self._device_manager.device, dtype=self._device_manager.dtype, seed=self.config.seed)
        if adapter_path is not None:
            model.load_adapter(adapter_path)
        return model

    def create_trainer(self, method: str, model: Model, config: Any = None, ref_model: Model | None = None,
                       *, callbacks: Sequence[TrainerCallback] = ()) -> Trainer:
        from .cpo import MLXCPOTrainer
        from .dpo import MLXDPOTrainer
        from .kto import MLXKTOTrainer
        from .orpo import MLXORPOTrainer
        from .sft import MLXSFTTrainer

        trainers: dict[str, Any] = {"sft": MLXSFTTrainer, "dpo": MLXDPOTrainer, "orpo": MLXORPOTrainer,
                                    "cpo": MLXCPOTrainer, "kto": MLXKTOTrainer}  # the methods this backend implements
        ref = ensure_mlx_model(ref_model) if ref_model is not None else None
        return create_trainer(self.name, trainers, method, ensure_mlx_model(model), config, ref, callbacks=callbacks)

    def create_sft_trainer(self, model: Model, config: SFTConfig | Mapping[str, Any],
                           *, callbacks: Sequence[TrainerCallback] = ()) -> "MLXSFTTrainer":
        from .sft import MLXSFTTrainer

        return MLXSFTTrainer(ensure_mlx_model(model), SFTConfig.coerce(config), callbacks=callbacks)

    def create_dpo_trainer(self, model: Model, config: DPOConfig | Mapping[str, Any], ref_model: Model | None = None,
                           *, callbacks: Sequence[TrainerCallback] = ()) -> "MLXDPOTrainer":
        from .dpo import MLXDPOTrainer

        ref = ensure_mlx_model(ref_model) if ref_model is not None else None
        return MLXDPOTrainer(ensure_mlx_model(model), DPOConfig.coerce(config), ref_model=ref, callbacks=callbacks)
