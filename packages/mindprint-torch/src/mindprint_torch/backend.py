"""PyTorchBackend: the ``pytorch`` backend factory (entry point ``mindprint.backends: pytorch``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from mindprint_interfaces import BackendConfig, ConfigError, DPOConfig, QuantizationConfig, SFTConfig
from mindprint_interfaces.protocols import Model, PathLike, Trainer, TrainerCallback
from mindprint_kit.methods import create_trainer
from mindprint_kit.model_dir import check_model_dir, check_tokenizer_dir
from mindprint_kit.model_source import resolve_source

from . import quantization as quant
from .adapter_manager import PyTorchAdapterManager
from .adapters import load_adapter
from .cpo import PyTorchCPOTrainer
from .device import PyTorchDeviceManager
from .dpo import PyTorchDPOTrainer
from .kto import PyTorchKTOTrainer
from .model import PyTorchModel, ensure_torch_model
from .orpo import PyTorchORPOTrainer
from .sft import PyTorchSFTTrainer

# The training methods this backend implements (names from mindprint_interfaces.methods).
TRAINERS: dict[str, Any] = {"sft": PyTorchSFTTrainer, "dpo": PyTorchDPOTrainer, "orpo": PyTorchORPOTrainer,
                            "cpo": PyTorchCPOTrainer, "kto": PyTorchKTOTrainer}


class PyTorchBackend:
    """PyTorch + transformers + PEFT + TRL. ``PyTorchBackend(BackendConfig("pytorch", device=..., dtype=...))``."""

    name = "pytorch"

    def __init__(self, config: BackendConfig | Mapping[str, Any] | None = None) -> None:
        cfg = BackendConfig.coerce(config)
        if cfg.backend_type is None:
            cfg = BackendConfig(backend_type="pytorch", device=cfg.device, dtype=cfg.dtype, seed=cfg.seed, options=cfg.options)
        self.config: BackendConfig = cfg
        self._device_manager = PyTorchDeviceManager(cfg.device, cfg.dtype)
        self._adapter_manager = PyTorchAdapterManager()
        torch.manual_seed(cfg.seed)

    @property
    def device_manager(self) -> PyTorchDeviceManager:
        return self._device_manager

    @property
    def adapter_manager(self) -> PyTorchAdapterManager:
        return self._adapter_manager

    def load_model(self, model_path: PathLike, tokenizer_path: PathLike | None = None,
                   adapter_path: PathLike | None = None, *, revision: str | None = None,
                   quantization: QuantizationConfig | Mapping[str, Any] | None = None) -> PyTorchModel:
        """Load an HF directory, a Hub id from the local HF cache (``mindprint_kit.model_source``), or a local
        ``.gguf`` file on this backend's device and dtype.

        ``quantization={"bits": 4}`` loads the base with bitsandbytes (NF4 by default, FP4 or 8-bit on request)
        and prepares it for k-bit training as PEFT documents (QLoRA); needs ``mindprint-torch[quantization]``."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        allow = self.config.options.get("allow_download")
        path = resolve_source(model_path, revision=revision, allow_download=allow)
        if tokenizer_path is not None:
            tokenizer_path = resolve_source(tokenizer_path, key="tokenizer_path", allow_download=allow)
        kwargs: dict[str, Any] = {"dtype": self._device_manager.torch_dtype}
        request = QuantizationConfig.coerce(quantization).for_backend(self.name) if quantization is not None else None
        if request is not None:
            if path.is_file():
                raise ConfigError("quantization: a .gguf file is dequantized on load; quantize its HF directory "
                                  "instead", key="quantization")
            kwargs["quantization_config"] = quant.bnb_config(request, self._device_manager.torch_dtype)
            kwargs["device_map"] = {"": self._device_manager.torch_device}
        if path.is_file():
            if path.suffix != ".gguf":
                raise ConfigError(f"model_path: {path} is a file but not a .gguf; pass the model directory", key="model_path")
            source, kwargs["gguf_file"] = str(path.parent), path.name
        else:
            from transformers import CONFIG_MAPPING

            check_model_dir(path, known_model_type=lambda t: t in CONFIG_MAPPING)  # no pickle, no remote code
            kwargs["use_safetensors"] = True
            source = str(path)
        check_tokenizer_dir(Path(tokenizer_path) if tokenizer_path is not None else path,
                            key="tokenizer_path" if tokenizer_path is not None else "model_path")
        tok_source = str(tokenizer_path) if tokenizer_path is not None else source
        tok_kwargs = {"gguf_file": kwargs["gguf_file"]} if "gguf_file" in kwargs and tokenizer_path is None else {}
        tokenizer = AutoTokenizer.from_pretrained(tok_source, **tok_kwargs)
        hf_model: Any = AutoModelForCausalLM.from_pretrained(source, **kwargs)
        if "gguf_file" in kwargs:
            hf_model.hf_quantizer = None  # dequantised to self.dtype; the Trainer refuses "quantized" models
            if hasattr(hf_model.config, "quantization_config"):
                del hf_model.config.quantization_config
        if request is None:
            hf_model.to(self._device_manager.torch_device)
        else:
            hf_model = quant.prepare(hf_model)
        hf_model.eval()
        model = PyTorchModel(hf_model, tokenizer, name_or_path=str(path))
        model.quantization = request
        if adapter_path is not None:
            load_adapter(model, adapter_path)
        return model

    def wrap(self, model: Any, tokenizer: Any) -> PyTorchModel:
        """Wrap a user's transformers model (or PeftModel) + tokenizer (the pipeline's legacy mode)."""
        if isinstance(model, PyTorchModel):
            return model
        if not isinstance(model, torch.nn.Module) or not hasattr(model, "generate"):
            raise TypeError(f"wrap: expected a transformers causal LM, got {type(model).__name__}")
        return PyTorchModel(model, tokenizer)

    def create_trainer(self, method: str, model: Model, config: Any = None, ref_model: Model | None = None,
                       *, callbacks: Sequence[TrainerCallback] = ()) -> Trainer:
        ref = ensure_torch_model(ref_model) if ref_model is not None else None
        return create_trainer(self.name, TRAINERS, method, ensure_torch_model(model), config, ref,
                              callbacks=callbacks)

    def create_sft_trainer(self, model: Model, config: SFTConfig | Mapping[str, Any],
                           *, callbacks: Sequence[TrainerCallback] = ()) -> PyTorchSFTTrainer:
        return PyTorchSFTTrainer(ensure_torch_model(model), config, callbacks)

    def create_dpo_trainer(self, model: Model, config: DPOConfig | Mapping[str, Any], ref_model: Model | None = None,
                           *, callbacks: Sequence[TrainerCallback] = ()) -> PyTorchDPOTrainer:
        return PyTorchDPOTrainer(ensure_torch_model(model), config, ref_model, callbacks)

    def __repr__(self) -> str:
        return f"PyTorchBackend(device={self._device_manager.device!r}, dtype={self._device_manager.dtype!r})"


TorchBackend = PyTorchBackend  # 0.1 name, kept as an alias
