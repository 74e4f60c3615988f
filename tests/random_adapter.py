"""A random LoRA adapter (non-zero A and B on q/k/v/o) for a tiny model: merging or applying it moves the log-probs,
so a lost merge, a dropped module or a wrong orientation shows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mindprint_interfaces import AdapterConfig
from mindprint_kit.adapter_files import write_adapter


def write_random_adapter(model_dir: Path, out: Path, *, seed: int, a_bound: float, b_std: float, r: int = 4) -> Path:
    """A ~ U(-a_bound, a_bound) (r, in), B ~ N(0, b_std) (out, r) on every layer's q/k/v/o_proj, PEFT layout."""
    cfg = json.loads((model_dir / "config.json").read_text())
    hidden, heads, kv = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    dim = cfg.get("head_dim") or hidden // heads
    outs = {"self_attn.q_proj": heads * dim, "self_attn.k_proj": kv * dim, "self_attn.v_proj": kv * dim,
            "self_attn.o_proj": hidden}
    ins = {"self_attn.o_proj": heads * dim}
    rng = np.random.default_rng(seed)
    weights = {(layer, module): (rng.uniform(-a_bound, a_bound, (r, ins.get(module, hidden))).astype(np.float32),
                                 rng.normal(0.0, b_std, (size, r)).astype(np.float32))
               for layer in range(cfg["num_hidden_layers"]) for module, size in outs.items()}
    return write_adapter(out, AdapterConfig(r=r, alpha=2 * r), weights)
