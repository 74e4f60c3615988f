"""MLX's side of the kit's full-state checkpoints (:mod:`mindprint_kit.checkpoints`).

``optim.AdamW`` keeps ``m`` / ``v`` per parameter (same meaning as torch's ``exp_avg`` / ``exp_avg_sq``, and
the same update under ``bias_correction=True``) and one ``step`` counter. mlx-lm's ``lora_a`` is (in, r) and
``lora_b`` (r, out): the transposes of PEFT's ``lora_A`` / ``lora_B``, so moments are transposed both ways.
"""

from __future__ import annotations

from typing import Any

import mlx.core as mx
import numpy as np
from mlx.utils import tree_flatten, tree_unflatten

from mindprint_interfaces import ConfigError
from mindprint_interfaces.adapter_format import LoraKey
from mindprint_kit.checkpoints import Moments

_KINDS = {"m": "exp_avg", "v": "exp_avg_sq"}
RNG_KEY = "mlx.key"


def _peft_name(mlx_name: str) -> str:
    """``model.layers.0.self_attn.q_proj.lora_a`` -> PEFT's live parameter name (as ``peft_gradient_name``)."""
    head, _, leaf = mlx_name.rpartition(".")
    if leaf not in ("lora_a", "lora_b") or not head.startswith("model.layers."):
        raise ConfigError(f"optimizer state for {mlx_name!r}: only LoRA parameters are trainable here",
                          key="resume_from_checkpoint")
    layer, _, module = head.removeprefix("model.layers.").partition(".")
    return LoraKey(int(layer), module, "A" if leaf == "lora_a" else "B").peft_parameter()


def export_moments(optimizer: Any) -> tuple[int, Moments]:
    """(step count, moments by PEFT parameter name in PEFT orientation)."""
    moments: Moments = {}
    step = 0
    for key, value in tree_flatten(optimizer.state):
        if key == "step":
            step = int(value.item())
            continue
        head, _, kind = key.rpartition(".")
        if kind not in _KINDS:
            continue
        moments.setdefault(_peft_name(head), {})[_KINDS[kind]] = np.array(value.astype(mx.float32)).T.copy()
    return step, moments


def import_moments(optimizer: Any, parameters: Any, step: int, moments: Moments) -> None:
    """Initialise ``optimizer`` on ``parameters`` and set its moments and step from a checkpoint."""
    optimizer.init(parameters)
    flat = []
    wanted = set(moments)
    for key, value in tree_flatten(optimizer.state):
        head, _, kind = key.rpartition(".")
        if key == "step":
            flat.append((key, mx.array(step, dtype=value.dtype)))
        elif kind in _KINDS:
            name = _peft_name(head)
            saved = moments.get(name, {}).get(_KINDS[kind])
            if saved is None:
                raise ConfigError(f"resume_from_checkpoint: no optimizer state for {name}", key="resume_from_checkpoint")
            if tuple(saved.shape[::-1]) != tuple(value.shape):
                raise ConfigError(f"resume_from_checkpoint: optimizer state of {name} has shape {list(saved.shape)}, "
                                  f"the parameter {list(value.shape[::-1])}", key="resume_from_checkpoint")
            wanted.discard(name)
            flat.append((key, mx.array(np.ascontiguousarray(saved.T)).astype(value.dtype)))
        else:
            flat.append((key, value))
    if wanted:
        raise ConfigError(f"resume_from_checkpoint: optimizer state for parameters this model lacks: "
                          f"{', '.join(sorted(wanted)[:3])}", key="resume_from_checkpoint")
    optimizer.state = tree_unflatten(flat)
    mx.eval(optimizer.state)


def rng_state() -> dict[str, np.ndarray]:
    state: Any = mx.random.state  # a sequence holding the global key array
    return {RNG_KEY: np.array(state[0])}


def restore_rng(rng: dict[str, np.ndarray], seed: int, step: int) -> None:
    """Restore MLX's global key; a checkpoint from another backend has none: a key derived from seed and step."""
    if RNG_KEY in rng:
        hi, lo = (int(x) for x in np.asarray(rng[RNG_KEY], dtype=np.uint64).reshape(-1)[:2])
        mx.random.seed((hi << 32) | lo)  # mx.random.key(s) is (s >> 32, s & 0xffffffff): the saved key exactly
    else:
        mx.random.seed(seed + step)
