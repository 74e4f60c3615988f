"""Quantized (QLoRA) bases on torch: bitsandbytes 4-bit (NF4 / FP4) and 8-bit (LLM.int8) through transformers + PEFT.

The base is loaded with transformers' ``BitsAndBytesConfig`` and prepared as PEFT documents QLoRA
(``prepare_model_for_kbit_training``: base frozen, non-quantized half-precision weights in fp32); the LoRA
matrices on top stay in full precision. bitsandbytes is the ``quantization`` extra of mindprint-torch; without
it a quantized load raises an error naming the extra. A merge dequantizes the base (PEFT's
``dequantize_bnb_weight``) into a full-precision copy first, so the merged weights are exactly what the
quantized model computed with.
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
from typing import Any

import torch

from mindprint_interfaces import ConfigError, MergeVerificationError, QuantizationConfig

from .device import DTYPES

EXTRA_HINT = "pip install 'mindprint-torch[quantization]'"


def require_bitsandbytes() -> None:
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ConfigError(f"quantization: bitsandbytes is not installed; install the extra with: {EXTRA_HINT}",
                          key="quantization")


def bnb_config(request: QuantizationConfig, dtype: torch.dtype) -> Any:
    """transformers' ``BitsAndBytesConfig`` for a request already resolved with ``for_backend("pytorch")``."""
    require_bitsandbytes()
    from transformers import BitsAndBytesConfig as _BitsAndBytesConfig

    BitsAndBytesConfig: Any = _BitsAndBytesConfig
    if request.bits == 8:
        return BitsAndBytesConfig(load_in_8bit=True)
    compute = dtype if request.compute_dtype == "auto" else DTYPES[request.compute_dtype]
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=request.mode, bnb_4bit_compute_dtype=compute,
                              bnb_4bit_use_double_quant=request.double_quant)


def prepare(hf_model: Any) -> Any:
    """PEFT's k-bit training preparation (gradient checkpointing is the trainer config's, not switched on here)."""
    from peft import prepare_model_for_kbit_training as _prepare

    prepare_model_for_kbit_training: Any = _prepare
    prepared = prepare_model_for_kbit_training(hf_model, use_gradient_checkpointing=False)
    for layer in _quantized_layers(prepared).values():
        # On an AVX512-BF16 CPU, bitsandbytes runs 4-bit layers outside training (eval, no grad) through a
        # repacked bf16 kernel: log-probs would then differ from the training forward by ~1e-2 relative.
        # The dequantize-and-matmul path is the same in both (never silently different numbers).
        if hasattr(layer, "support_avx512bf16_for_cpu"):
            layer.support_avx512bf16_for_cpu = False
    _own_unquantized_weights(prepared)
    return prepared


def _own_unquantized_weights(hf_model: Any) -> None:
    """Copy the weights left unquantized (embeddings, norms, a quantized layer's bias) out of the checkpoint's map.

    transformers loads safetensors zero-copy: a parameter whose dtype did not change on load is a view into the
    mapped file. After a quantized load that view keeps the whole checkpoint mapped — every page of it was read
    to quantize the linears — so the process holds (and reports) the full-precision file next to the 4-bit
    model: 1.8 GiB of 2.6 GiB resident for a Qwen2.5-0.5B-shaped fp32 base. Mapped tensors are the ones whose
    storage cannot be resized; tied parameters are one ``Parameter`` and are copied once.
    """
    quantized = _quantized_layers(hf_model)
    for name, param in hf_model.named_parameters():
        owner, _, leaf = name.rpartition(".")
        if (owner in quantized and leaf == "weight") or param.untyped_storage().resizable():
            continue  # the quantized weight itself is new memory; a quantized layer's bias (Qwen2) is not
        param.data = param.data.clone()


def is_quantized(hf_model: Any) -> bool:
    base = hf_model.get_base_model() if hasattr(hf_model, "get_base_model") else hf_model
    return bool(getattr(base, "is_loaded_in_4bit", False) or getattr(base, "is_loaded_in_8bit", False))


def _quantized_layers(module: Any) -> dict[str, Any]:
    bnb_nn: Any = importlib.import_module("bitsandbytes.nn")
    kinds = (bnb_nn.Linear4bit, bnb_nn.Linear8bitLt)
    return {name: m for name, m in module.named_modules() if isinstance(m, kinds)}


def dequantized_state(base: Any) -> dict[str, torch.Tensor]:
    """The base model's weights as fp32 CPU tensors, bitsandbytes layers dequantized (PEFT's helper);
    PEFT's ``base_layer`` indirection and the LoRA matrices left out: the plain transformers names."""
    from peft.utils.integrations import dequantize_bnb_weight

    quantized = _quantized_layers(base)
    out: dict[str, torch.Tensor] = {}
    for name, param in base.named_parameters():
        owner, _, leaf = name.rpartition(".")
        if ".lora_" in name:
            continue
        clean = name.replace(".base_layer.", ".")
        if owner in quantized and leaf == "weight":
            state = getattr(param, "quant_state", None)  # 4-bit; 8-bit: the layer's MatmulLtState
            if state is None:
                state = getattr(quantized[owner], "state", None)
            out[clean] = dequantize_bnb_weight(param, state=state).detach().to("cpu", torch.float32).contiguous()
        else:
            out[clean] = param.detach().to("cpu", torch.float32).contiguous()
    return out


def full_precision_copy(hf_model: Any) -> Any:
    """A CPU fp32 copy of ``hf_model`` (PEFT model or plain) with a quantized base dequantized; the adapter, if
    any, is copied onto it. A plain model is deep-copied as before."""
    if not is_quantized(hf_model):
        return copy.deepcopy(hf_model).to(device="cpu", dtype=torch.float32)
    from peft import PeftModel, get_peft_model_state_dict, set_peft_model_state_dict
    from transformers import AutoModelForCausalLM

    is_peft = isinstance(hf_model, PeftModel)
    base = hf_model.get_base_model() if is_peft else hf_model
    config = copy.deepcopy(base.config)
    for key in ("quantization_config", "_pre_quantization_dtype"):
        if hasattr(config, key):
            delattr(config, key)
    config.dtype = torch.float32
    auto: Any = AutoModelForCausalLM
    plain = auto.from_config(config, dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(dequantized_state(base), strict=False)
    missing = [k for k in missing if not (k == "lm_head.weight" and getattr(config, "tie_word_embeddings", False))]
    if missing or unexpected:
        raise MergeVerificationError(f"dequantizing the base left weights unmatched: missing {missing[:5]}, "
                                     f"unexpected {unexpected[:5]}", max_abs_diff=float("nan"), tolerance=0.0)
    if getattr(config, "tie_word_embeddings", False):
        plain.tie_weights()
    if not is_peft:
        return plain.eval()
    from peft import get_peft_model

    name = hf_model.active_adapter
    work = get_peft_model(plain, copy.deepcopy(hf_model.peft_config[name]), adapter_name=name)
    state = {k: v.detach().to("cpu", torch.float32) for k, v in get_peft_model_state_dict(hf_model, adapter_name=name).items()}
    set_peft_model_state_dict(work, state, adapter_name=name)
    return work.eval()
