"""A fresh LoRA adapter's initial weights, drawn the same way on every backend.

PEFT's default initialisation (``init_lora_weights=True``, ``LoraLayer.reset_lora_parameters``):
``lora_A`` (r, in) is ``kaiming_uniform_(a=sqrt(5))``, i.e. uniform on ``(-1/sqrt(in), 1/sqrt(in))``
(gain ``sqrt(2 / (1 + 5))``, bound ``sqrt(3) * gain / sqrt(fan_in)``), and ``lora_B`` (out, r) is zero, so
the adapted model starts as the base model. The draw here is numpy's, so a seed gives the same adapter on
torch, on MLX and on any other backend.

Each matrix has its own generator, ``np.random.default_rng([seed, crc32(PEFT key)])``, keyed by its PEFT
parameter name (``base_model.model.model.layers.N.<module>.lora_A.weight``): the result does not depend on
the order the backend visits its layers, nor on which other layers or modules get an adapter (a
``lora_layers`` subset draws the same matrices as those layers get in a full adapter). Shapes come from the
live LoRA layers, so quantized (QLoRA) bases, whose packed weights do not show ``in``, work alike.

PEFT's other initialisations (gaussian, PiSSA, OLoRA, LoftQ, ...) and DoRA / rsLoRA are not exposed by
mindprint's config (adapter files using DoRA / rsLoRA are refused when read).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping

import numpy as np

from mindprint_interfaces import ConfigError
from mindprint_interfaces.adapter_format import LoraKey

from .adapter_files import LoraWeights

__all__ = ["check_rank", "initial_lora_weights", "lora_a_init"]

Site = tuple[int, str]  # (layer index, module path inside the block, e.g. "self_attn.q_proj")


def check_rank(r: int, hidden_size: int | None) -> None:
    """Refuse a LoRA rank above the model's width before any layer is built: an (r, hidden) matrix with
    r > hidden adds parameters and memory but no capacity (the update's rank is at most the width)."""
    if hidden_size is not None and r > hidden_size:
        raise ConfigError(f"lora_r={r} is larger than the model's hidden size {hidden_size}: a LoRA update's rank "
                          f"cannot exceed the layer width (use lora_r <= {hidden_size}; 8-64 is usual)", key="lora_r")


def _generator(seed: int, key: LoraKey) -> np.random.Generator:
    # SeedSequence takes non-negative integers only: a negative config seed maps to its 64-bit two's complement
    return np.random.default_rng([seed % (1 << 64), zlib.crc32(key.peft().encode("utf-8"))])


def lora_a_init(seed: int, layer: int, module: str, r: int, in_features: int) -> np.ndarray:
    """PEFT's ``lora_A`` (r, in) for one site, fp32: uniform on (-1/sqrt(in), 1/sqrt(in))."""
    if r <= 0 or in_features <= 0:
        raise ValueError(f"LoRA site layers.{layer}.{module}: r and in_features must be > 0, got {r}, {in_features}")
    bound = 1.0 / math.sqrt(in_features)
    rng = _generator(seed, LoraKey(layer, module, "A"))
    return rng.uniform(-bound, bound, size=(r, in_features)).astype(np.float32)


def initial_lora_weights(shapes: Mapping[Site, tuple[int, int, int]], seed: int) -> LoraWeights:
    """The initial adapter for ``shapes``: (layer, module) -> (r, in_features, out_features).

    Returns PEFT-oriented fp32 arrays: A (r, in) drawn as PEFT draws it, B (out, r) zero."""
    return {site: (lora_a_init(seed, site[0], site[1], r, in_f), np.zeros((out_f, r), dtype=np.float32))
            for site, (r, in_f, out_f) in sorted(shapes.items())}
