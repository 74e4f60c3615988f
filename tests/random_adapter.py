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


def write_peft_random_adapter(model_dir: Path, out: Path) -> Path:
    """A PEFT adapter (r=8, q/k/v/o) with random non-zero A and B, written by PEFT itself (torch seed 1), halved
    so the logits stay well-conditioned: a shared starting point both backends load."""
    from typing import Any

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    base = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    cfg = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                     init_lora_weights=False, task_type="CAUSAL_LM")
    peft_model: Any = get_peft_model(base, cfg)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_" in name:
                p.mul_(0.5)
    peft_model.save_pretrained(str(out))
    return out
