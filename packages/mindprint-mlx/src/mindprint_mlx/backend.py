"""MLXBackend: the entry point ``mindprint.backends: mlx``. Importing this module does not import mlx."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from mindprint_interfaces import BackendConfig, DPOConfig, QuantizationConfig, SFTConfig
from mindprint_interfaces.protocols import Model, PathLike, Trainer, TrainerCallback
from mindprint_kit.methods import create_trainer
from mindprint_kit.model_dir import check_model_dir, check_tokenizer_dir

from ._imports import require_mlx

if TYPE_CHECKING:
    from .adapter_manager import MLXAdapterManager
    from .device import MLXDeviceManager
    from .dpo import MLXDPOTrainer
    from .model import MLXModel
    from .sft import MLXSFTTrainer


# The training methods this backend implements (names from mindprint_interfaces.methods), as lazy paths:
# importing this module must not import mlx.
TRAINERS: dict[str, str] = {"sft": "mindprint_mlx.sft:MLXSFTTrainer", "dpo": "mindprint_mlx.dpo:MLXDPOTrainer",
                            "orpo": "mindprint_mlx.orpo:MLXORPOTrainer", "cpo": "mindprint_mlx.cpo:MLXCPOTrainer",
                            "kto": "mindprint_mlx.kto:MLXKTOTrainer"}


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
                   adapter_path: PathLike | None = None, *, revision: str | None = None,
                   quantization: QuantizationConfig | Mapping[str, Any] | None = None) -> "MLXModel":
        """Load an HF / mlx-lm directory or a Hub id from the local HF cache (``mindprint_kit.model_source``).
        ``quantization={"bits": 4}`` quantizes a full-precision base on load (mlx-lm's affine quantization, as
        ``mlx_lm.convert -q``); a quantized directory loads as it is."""
        from mindprint_kit.model_source import resolve_source

        from . import quantization as quant
        from .loading import load_hf_directory
        from .model import MLXModel

        request = QuantizationConfig.coerce(quantization) if quantization is not None else None
        allow = (self.config.options or {}).get("allow_download")
        mpath = resolve_source(model_path, revision=revision, allow_download=allow)
        tpath = (resolve_source(tokenizer_path, key="tokenizer_path", allow_download=allow)
                 if tokenizer_path is not None else None)
        check_model_dir(mpath, known_model_type=_mlx_lm_knows, key="model")  # no pickle, no remote code
        check_tokenizer_dir(tpath or mpath, key="tokenizer_path" if tpath is not None else "model")
        module, tokenizer, hf_config = load_hf_directory(mpath, tpath, self._device_manager.mx_dtype)
        resolved, quantize_now = quant.resolve(hf_config, request)
        if quantize_now and resolved is not None:
            hf_config = quant.quantize(module, hf_config, resolved)
        model = MLXModel(module, tokenizer, model_path=mpath, tokenizer_path=tpath or mpath, hf_config=hf_config,
                         device=self._device_manager.device, dtype=self._device_manager.dtype, seed=self.config.seed)
        model.quantization = resolved
        if adapter_path is not None:
            model.load_adapter(adapter_path)
        return model

    def create_trainer(self, method: str, model: Model, config: Any = None, ref_model: Model | None = None,
                       *, callbacks: Sequence[TrainerCallback] = ()) -> Trainer:
        ref = ensure_mlx_model(ref_model) if ref_model is not None else None
        return create_trainer(self.name, TRAINERS, method, ensure_mlx_model(model), config, ref, callbacks=callbacks)

    def create_sft_trainer(self, model: Model, config: SFTConfig | Mapping[str, Any],
                           *, callbacks: Sequence[TrainerCallback] = ()) -> "MLXSFTTrainer":
        from .sft import MLXSFTTrainer

        return MLXSFTTrainer(ensure_mlx_model(model), SFTConfig.coerce(config), callbacks=callbacks)

    def create_dpo_trainer(self, model: Model, config: DPOConfig | Mapping[str, Any], ref_model: Model | None = None,
                           *, callbacks: Sequence[TrainerCallback] = ()) -> "MLXDPOTrainer":
        from .dpo import MLXDPOTrainer

        ref = ensure_mlx_model(ref_model) if ref_model is not None else None
        return MLXDPOTrainer(ensure_mlx_model(model), DPOConfig.coerce(config), ref_model=ref, callbacks=callbacks)


def _mlx_lm_knows(model_type: str) -> bool:
    """mlx-lm implements this architecture itself (a public ``mlx_lm.models.<type>`` module)."""
    import importlib.util

    if not model_type.isidentifier():
        return False
    return importlib.util.find_spec(f"mlx_lm.models.{model_type}") is not None
