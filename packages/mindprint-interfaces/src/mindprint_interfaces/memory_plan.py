"""Peak training memory predicted from the configuration alone (stdlib only): ``mindprint plan``.

The estimate adds up what a LoRA run holds at its peak: the base weights (full precision, or
quantized with their scales), the LoRA matrices with their gradients and AdamW state (fp32),
the activations kept for the backward pass (every decoder layer, or with gradient checkpointing
only each layer's input plus one layer being recomputed), and the logits with what the loss keeps
of them (fp32). DPO runs chosen and rejected rows together (twice the rows of SFT; the reference
log-probs are precomputed, so no reference model is held). The per-token activation counts are
those of a Llama/Qwen2 decoder layer; each backend's own differences (fp32 norms and fused
attention on torch, stored attention probabilities on MLX) are named where they are counted.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}
GIB = 1024 ** 3


# Shapes of well-known models, so a plan needs no download (config.json values of the hub repositories).
KNOWN_SHAPES: dict[str, dict[str, Any]] = {
    "Qwen/Qwen2.5-0.5B-Instruct": {"hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24,
                                   "num_attention_heads": 14, "num_key_value_heads": 2, "vocab_size": 151936,
                                   "tie_word_embeddings": True},
    "Qwen/Qwen2.5-1.5B-Instruct": {"hidden_size": 1536, "intermediate_size": 8960, "num_hidden_layers": 28,
                                   "num_attention_heads": 12, "num_key_value_heads": 2, "vocab_size": 151936,
                                   "tie_word_embeddings": True},
    "Qwen/Qwen2.5-7B-Instruct": {"hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
                                 "num_attention_heads": 28, "num_key_value_heads": 4, "vocab_size": 152064,
                                 "tie_word_embeddings": False},
}


@dataclass(frozen=True)
class ModelShape:
    """What the arithmetic needs from a model's ``config.json``."""

    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    tied: bool

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ModelShape:
        text = config.get("text_config", config)
        hidden = int(text["hidden_size"])
        heads = int(text["num_attention_heads"])
        return cls(hidden=hidden, intermediate=int(text["intermediate_size"]), layers=int(text["num_hidden_layers"]),
                   heads=heads, kv_heads=int(text.get("num_key_value_heads") or heads),
                   head_dim=int(text.get("head_dim") or hidden // heads), vocab=int(text["vocab_size"]),
                   tied=bool(config.get("tie_word_embeddings", text.get("tie_word_embeddings", False))))

    @classmethod
    def from_directory(cls, path: str | Path) -> ModelShape:
        return cls.from_config(json.loads((Path(path) / "config.json").read_text(encoding="utf-8")))

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """(in, out) of each linear of one decoder layer."""
        q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
        h, i = self.hidden, self.intermediate
        return {"q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h),
                "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}

    @property
    def layer_linear_params(self) -> int:
        return sum(a * b for a, b in self.linear_shapes().values())

    @property
    def embedding_params(self) -> int:
        return self.vocab * self.hidden * (1 if self.tied else 2)

    @property
    def params(self) -> int:
        return self.layers * (self.layer_linear_params + 2 * self.hidden) + self.embedding_params + self.hidden


@dataclass(frozen=True)
class PlanRequest:
    max_length: int = 2048
    batch: int = 4
    method: str = "sft"  # sft | dpo
    dtype: str = "bfloat16"
    quantize_bits: int | None = None
    group_size: int = 64
    gradient_checkpointing: bool = False
    backend: str = "mlx"  # mlx quantizes the embeddings too; bitsandbytes leaves them in dtype
    lora_r: int = 8
    target_modules: Sequence[str] = ("q_proj", "k_proj", "v_proj", "o_proj")


@dataclass
class Plan:
    parts: dict[str, float] = field(default_factory=dict)  # bytes, held together at the training peak
    load: float = 0.0  # bytes held while loading, where that can exceed the training peak (quantize on load)

    @property
    def total(self) -> float:
        """The training peak."""
        return sum(self.parts.values())

    @property
    def peak(self) -> float:
        """What the run needs: the training peak, or loading if that holds more."""
        return max(self.total, self.load)

    def table(self) -> list[tuple[str, str]]:
        rows = [(k, human(v)) for k, v in self.parts.items()] + [("total (training peak)", human(self.total))]
        if self.load > self.total:
            rows.append(("loading (quantizing on load)", human(self.load)))
        return rows


def human(n: float) -> str:
    return f"{n / GIB:.2f} GiB" if n >= GIB / 10 else f"{n / 1024 ** 2:.1f} MiB"


def parse_memory(text: str) -> float:
    """``64GB`` / ``64GiB`` / ``512MB`` -> bytes (GB read as GiB, as hosts report memory)."""
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    units = {"K": 1024, "M": 1024 ** 2, "G": GIB, "T": 1024 ** 4}
    if t and t[-1] in units:
        return float(t[:-1]) * units[t[-1]]
    return float(t)


# What the backward pass keeps per token and decoder layer with a frozen base and LoRA adapters, counted from
# the autograd graph of a Llama/Qwen2 layer and checked against measured peaks (benchmarks/memory_plan.md).
# A frozen linear keeps nothing (its input gradient needs only the weight); the LoRA matrices keep their input
# (shared with the norm output) and their rank-r product. Hidden-sized: each RMSNorm's input and output (two
# norms), the query and the attention output (o_proj's input): 6 x hidden in the activation dtype — except
# that transformers' RMSNorm computes in fp32, so on torch the norms' 4 tensors are fp32 whatever the dtype.
# Intermediate-sized: gate and up projections and the SiLU output (3 x intermediate).
NORM_SAVED = 4
HIDDEN_SAVED = 2
INTERMEDIATE_SAVED = 3
# Copies of the (rows x positions x vocab) logits alive at the peak, fp32: torch (TRL/transformers' loss)
# holds the logits, their fp32 log-softmax and its gradient; MLX's fused cross-entropy the logits and gradient.
LOGIT_COPIES = {"pytorch": 3, "mlx": 2}


def predict(shape: ModelShape, req: PlanRequest) -> Plan:
    """Peak bytes by part. Attention: torch's ``scaled_dot_product_attention`` runs fused kernels on CPU and CUDA
    that keep only a log-sum-exp per row, so no scores are stored; MLX's attention backward keeps the
    probabilities, one (heads x positions x positions) matrix per layer in the activation dtype."""
    act = DTYPE_BYTES[req.dtype]
    torch = req.backend == "pytorch"
    rows = req.batch * (2 if req.method == "dpo" else 1)
    tokens = rows * req.max_length
    plan = Plan()
    linear = shape.layers * shape.layer_linear_params
    if req.quantize_bits:
        per_weight = req.quantize_bits / 8 + (2 * act / req.group_size if not torch else 4 / 64)
        plan.parts["base weights (quantized linears)"] = linear * per_weight
        # bitsandbytes leaves the embeddings unquantized and PEFT's k-bit preparation casts them to fp32;
        # mlx-lm quantizes them with the linears.
        plan.parts["embeddings / LM head"] = shape.embedding_params * (4 if torch else per_weight)
        if not torch:
            # mlx-lm quantizing a full-precision checkpoint on load holds the whole model in ``dtype`` first
            # (a directory written by ``mlx_lm.convert -q`` loads at its quantized size); bitsandbytes
            # quantizes tensor by tensor as transformers loads them.
            plan.load = shape.params * act
    else:
        plan.parts["base weights"] = linear * act
        plan.parts["embeddings / LM head"] = shape.embedding_params * act
    shapes = shape.linear_shapes()
    lora = shape.layers * sum(req.lora_r * sum(shapes[t]) for t in req.target_modules if t in shapes)
    plan.parts["LoRA weights + grads + AdamW (fp32)"] = lora * 16
    # PEFT's k-bit preparation casts the norms to fp32, and an fp32 norm weight makes its output fp32: from the
    # first norm on, the whole activation stream of a bitsandbytes base is fp32 whatever the dtype.
    stream = 4 if torch and req.quantize_bits else act
    norm_bytes = 4 if torch else stream
    per_token_layer = (NORM_SAVED * shape.hidden * norm_bytes
                       + (HIDDEN_SAVED * shape.hidden + INTERMEDIATE_SAVED * shape.intermediate
                          + len(req.target_modules) * req.lora_r) * stream)
    scores = 0 if torch else rows * shape.heads * req.max_length ** 2 * stream
    if req.gradient_checkpointing:
        plan.parts["activations (checkpointed)"] = (shape.layers * tokens * shape.hidden * stream
                                                    + tokens * per_token_layer + scores)
    else:
        plan.parts["activations"] = shape.layers * (tokens * per_token_layer + scores)
    plan.parts["logits + loss (fp32)"] = tokens * shape.vocab * 4 * LOGIT_COPIES.get(req.backend, 3)
    return plan


def suggestions(shape: ModelShape, req: PlanRequest, budget: float) -> list[str]:
    """What to change, each with its predicted total, best first, when the plan does not fit ``budget``."""
    options: list[tuple[str, PlanRequest]] = []
    if not req.gradient_checkpointing:
        options.append(("--gradient-checkpointing", _replace(req, gradient_checkpointing=True)))
    if req.quantize_bits is None:
        options.append(("--quantize 4", _replace(req, quantize_bits=4)))
    if req.batch > 1:
        options.append((f"--batch {max(1, req.batch // 2)} (and gradient_accumulation_steps x2)",
                        _replace(req, batch=max(1, req.batch // 2))))
    options.append((f"--max-length {req.max_length // 2}", _replace(req, max_length=req.max_length // 2)))
    scored = [(predict(shape, r).peak, label) for label, r in options]
    scored.sort()
    return [f"{label}: {human(total)}" + (" (fits)" if total <= budget else "") for total, label in scored]


def _replace(req: PlanRequest, **changes: Any) -> PlanRequest:
    import dataclasses

    return dataclasses.replace(req, **changes)


def relative_error(predicted: float, measured: float) -> float:
    return abs(predicted - measured) / measured if measured > 0 else math.inf
