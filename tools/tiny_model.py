"""Build tiny random-weight Llama models (HF layout) for fast tests on both backends.

The config deliberately uses non-default values for every field that changes the maths
(rope theta, RMSNorm epsilon, tied embeddings, grouped-query attention), so a loader that
silently drops one of them produces different logits and a parity test catches it.

Usage: ``python tools/tiny_model.py OUT_DIR`` or ``build_tiny_llama(path)`` from tests.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

CORPUS = [
    "The capital of France is Paris. The capital of Italy is Rome.",
    "Photosynthesis turns light, water and carbon dioxide into sugar and oxygen.",
    "A topic, a chapter and a unit make up a curriculum. Answer briefly and kindly.",
    "What is two plus two? Two plus two is four. What is the answer? The answer is yes.",
    "user assistant system question answer chosen rejected good bad helpful polite",
    "0123456789 abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ .,;:!?'\"()-",
]

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def build_tokenizer(out_dir: Path, vocab_size: int = 384) -> int:
    """Train a small byte-level BPE tokenizer with a ChatML chat template; returns its vocab size."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
    )
    fast.chat_template = CHATML_TEMPLATE
    fast.save_pretrained(str(out_dir))
    return len(fast)


def build_tiny_llama(out_dir: str | Path, *, seed: int = 0, num_layers: int = 2, hidden_size: int = 64,
                     tie_word_embeddings: bool = True) -> Path:
    """Write a random-weight Llama + tokenizer to ``out_dir`` (fp32 safetensors). Cached by content."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out = Path(out_dir)
    marker = out / ".tiny-model.json"
    spec = {"seed": seed, "num_layers": num_layers, "hidden_size": hidden_size, "tie": tie_word_embeddings, "v": 2}
    if marker.is_file() and json.loads(marker.read_text()) == spec:
        return out
    out.mkdir(parents=True, exist_ok=True)
    vocab = build_tokenizer(out)
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        rms_norm_eps=1e-5,  # non-default (1e-6)
        rope_theta=5000.0,  # non-default (10000)
        tie_word_embeddings=tie_word_embeddings,
        bos_token_id=None,
        eos_token_id=2,
        pad_token_id=0,
        torch_dtype="float32",
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    # Larger-than-default init so logits are far from uniform and differences show.
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0.0, 0.08)
    model.save_pretrained(str(out), safe_serialization=True)
    marker.write_text(json.dumps(spec))
    return out


# -- one tiny model per family ----------------------------------------------------------------------------------
# Per family (mindprint_interfaces.architectures.FAMILIES): the config with its distinctive feature on, and the
# overrides that switch the feature off (a test checks that switching it off moves the log-probs).
_ROPE = {"rope_type": "default", "rope_theta": 5000.0}
FAMILY_BUILDS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "llama": ({"rope_parameters": {"rope_type": "llama3", "rope_theta": 5000.0, "factor": 8.0, "low_freq_factor": 1.0,
                                   "high_freq_factor": 4.0, "original_max_position_embeddings": 8}},
              {"rope_parameters": _ROPE}),
    "mistral": ({"sliding_window": 4, "rope_parameters": _ROPE}, {"sliding_window": None}),
    "qwen2": ({"rope_parameters": _ROPE}, {"zero_bias": True}),
    "qwen3": ({"head_dim": 16, "rope_parameters": _ROPE}, {"unit_qk_norm": True}),
    "gemma2": ({"head_dim": 16, "sliding_window": 64, "attn_logit_softcapping": 5.0, "final_logit_softcapping": 3.0,
                "query_pre_attn_scalar": 16}, {"final_logit_softcapping": None}),
    "gemma3_text": ({"head_dim": 16, "sliding_window": 4, "query_pre_attn_scalar": 16,
                     "layer_types": ["sliding_attention", "full_attention"],
                     "rope_parameters": {"sliding_attention": {"rope_type": "default", "rope_theta": 1000.0},
                                         "full_attention": {"rope_type": "default", "rope_theta": 50000.0}}},
                    {"sliding_window": 512}),
    "phi3": ({"rope_parameters": _ROPE | {"partial_rotary_factor": 0.5}, "partial_rotary_factor": 0.5},
             {"rope_parameters": _ROPE, "partial_rotary_factor": 1.0}),
    "olmo2": ({"rope_parameters": _ROPE}, {"unit_qk_norm": True}),
    "granite": ({"embedding_multiplier": 3.0, "residual_multiplier": 0.5, "attention_multiplier": 0.1,
                 "logits_scaling": 4.0, "rope_parameters": _ROPE},
                {"embedding_multiplier": 1.0, "residual_multiplier": 1.0, "attention_multiplier": 0.25,
                 "logits_scaling": 1.0}),
}
_BUILD_OPTIONS = ("zero_bias", "unit_qk_norm")


def build_tiny_family(family: str, out_dir: str | Path, *, feature: bool = True, seed: int = 0,
                      config_overrides: dict[str, Any] | None = None) -> Path:
    """A 2-layer random-weight model of ``family`` (a model_type) + tokenizer, fp32, by ``save_pretrained``.

    Every weight is random, norms and biases included (a loader that drops a bias or a norm shows). With
    ``feature=False`` the family's distinctive feature is switched off. Cached by content in ``out_dir``.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    on, off = FAMILY_BUILDS[family]
    fields = dict(on) | (dict(off) if not feature else {}) | dict(config_overrides or {})
    options = {k: fields.pop(k) for k in _BUILD_OPTIONS if k in fields}
    out = Path(out_dir)
    marker = out / ".tiny-model.json"
    spec = {"family": family, "fields": fields, "options": options, "seed": seed, "v": 1}
    if marker.is_file() and json.loads(marker.read_text()) == spec:
        return out
    out.mkdir(parents=True, exist_ok=True)
    vocab = build_tokenizer(out)
    base: dict[str, Any] = {
        "vocab_size": vocab, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 512, "rms_norm_eps": 1e-5,
        "tie_word_embeddings": True, "bos_token_id": None, "eos_token_id": 2, "pad_token_id": 0,
    }
    config = AutoConfig.for_model(family, **(base | fields))
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() > 1:
                p.normal_(0.0, 0.08)
            elif name.endswith("bias"):
                p.normal_(0.0, 0.0 if options.get("zero_bias") else 0.3)
            elif options.get("unit_qk_norm") and ("q_norm" in name or "k_norm" in name):
                p.fill_(0.0 if "gemma" in family else 1.0)
            else:  # norm weights (gemma stores them as an offset from 1)
                p.add_(torch.randn_like(p) * 0.3)
    model.save_pretrained(str(out), safe_serialization=True)
    marker.write_text(json.dumps(spec))
    return out


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python tools/tiny_model.py OUT_DIR")
    print(build_tiny_llama(sys.argv[1]))
