"""MLXModel: an mlx-lm causal LM (+ optional LoRA adapter) behind the shared Model protocol."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx.nn as nn
from mlx_lm.generate import stream_generate
from mlx_lm.sample_utils import make_sampler
from mlx_lm.tokenizer_utils import TokenizerWrapper

from mindprint_interfaces import (
    AdapterConfig,
    BackendMismatchError,
    ForwardOutput,
    Generation,
    GenerationConfig,
    HFTokenizer,
    QuantizationConfig,
)
from mindprint_interfaces.data import IGNORE_INDEX
from mindprint_interfaces.protocols import PathLike, Prompt
from mindprint_kit.placement import Placement
from mindprint_kit.prompts import encode_prompt, trim_at_stop
from mindprint_kit.streaming import stream_text as stream_pieces

from . import adapters, lora, merge
from ._compat import mlx_lm as mlx_lm_compat
from .losses import ce_sum_and_count, token_logprobs

LOGPROB_CHUNK = 8  # sequences per forward in sequence_logprobs


def right_pad(rows: Sequence[Sequence[int]], value: int) -> list[list[int]]:
    width = max(len(r) for r in rows)
    return [list(r) + [value] * (width - len(r)) for r in rows]


def check_right_padded(attention_mask: Sequence[Sequence[int]]) -> list[int]:
    """Lengths of right-padded rows; MLX's causal attention leaves real positions untouched by right padding."""
    lengths = []
    for row in attention_mask:
        n = sum(1 for v in row if v)
        if any(not v for v in row[:n]) or any(row[n:]):
            raise ValueError("attention_mask must be right-padded (1...1 0...0); left padding is not supported by MLX forward")
        lengths.append(n)
    return lengths


class MLXModel(Placement):
    """Loaded by :meth:`MLXBackend.load_model`; the adapter (if any) lives inside ``module`` as LoRALinear layers."""

    quantization: QuantizationConfig | None = None  # the base's quantization (QLoRA), set by the backend

    def __init__(self, module: nn.Module, tokenizer: TokenizerWrapper, *, model_path: Path, tokenizer_path: Path,
                 hf_config: Mapping[str, Any], device: str, dtype: str, seed: int = 42) -> None:
        self.module = module
        self.tokenizer_wrapper = tokenizer
        self._tokenizer = HFTokenizer(mlx_lm_compat.hf_tokenizer(tokenizer))
        self.model_path = model_path
        self.tokenizer_path = tokenizer_path
        self.hf_config = dict(hf_config)
        self._device = device
        self._dtype = dtype
        self.seed = seed
        self.adapter_config: AdapterConfig | None = None

    # --- properties -------------------------------------------------------------------------
    @property
    def backend_name(self) -> str:
        return "mlx"

    @property
    def tokenizer(self) -> HFTokenizer:
        return self._tokenizer

    @property
    def num_layers(self) -> int:
        return len(self.module.layers)

    @property
    def pad_id(self) -> int:
        pad = self._tokenizer.pad_token_id
        return pad if pad is not None else 0

    def has_adapter(self) -> bool:
        return self.adapter_config is not None

    def __repr__(self) -> str:
        return f"MLXModel({self.model_path}, layers={self.num_layers}, device={self.device}, dtype={self.dtype}, adapter={self.adapter_config})"

    # --- maths ------------------------------------------------------------------------------
    def logits(self, input_ids: Any) -> Any:
        """Native forward: (B, T) int array -> (B, T, V) float32 logits."""
        return self.module(input_ids).astype(mx.float32)

    def forward(self, input_ids: Sequence[Sequence[int]], labels: Sequence[Sequence[int]] | None = None,
                attention_mask: Sequence[Sequence[int]] | None = None) -> ForwardOutput:
        lengths = check_right_padded(attention_mask) if attention_mask is not None else [len(r) for r in input_ids]
        ids = right_pad([list(r)[:n] for r, n in zip(input_ids, lengths, strict=True)], self.pad_id)
        logits = self.logits(mx.array(ids))
        loss = None
        if labels is not None:
            lab = right_pad([list(r)[:n] for r, n in zip(labels, lengths, strict=True)], IGNORE_INDEX)
            total, count = ce_sum_and_count(logits, mx.array(lab))
            loss = float(total / mx.maximum(count, 1.0))
        mx.eval(logits)
        return ForwardOutput(logits=logits, loss=loss)

    def completion_logprobs(self, prompts: Sequence[Sequence[int]], completions: Sequence[Sequence[int]]) -> Any:
        """mx.array (N,) of summed completion-token log-probs (one batched forward, no chunking)."""
        ids = right_pad([list(p) + list(c) for p, c in zip(prompts, completions, strict=True)], self.pad_id)
        labels = right_pad([[IGNORE_INDEX] * len(p) + list(c) for p, c in zip(prompts, completions, strict=True)],
                           IGNORE_INDEX)
        logps, _ = token_logprobs(self.logits(mx.array(ids)), mx.array(labels))
        return logps.sum(axis=1)

    def sequence_logprobs(self, prompts: Sequence[Sequence[int]], completions: Sequence[Sequence[int]]) -> list[float]:
        if len(prompts) != len(completions):
            raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
        out: list[float] = []
        for start in range(0, len(prompts), LOGPROB_CHUNK):
            chunk = self.completion_logprobs(prompts[start:start + LOGPROB_CHUNK], completions[start:start + LOGPROB_CHUNK])
            out += [float(v) for v in chunk.tolist()]
        return out

    def next_token_logprobs(self, input_ids: Sequence[int]) -> list[float]:
        logits = self.logits(mx.array([list(input_ids)]))[0, -1]
        values: list[float] = (logits - mx.logsumexp(logits)).tolist()
        return values

    # --- generation -------------------------------------------------------------------------
    def encode_prompt(self, prompt: Prompt) -> list[int]:
        """Prompt -> ids, the same on every backend (:func:`mindprint_kit.prompts.encode_prompt`)."""
        return encode_prompt(self._tokenizer, prompt)

    def prompt_ids(self, prompt: Prompt) -> list[int]:
        """Deprecated name of :meth:`encode_prompt`."""
        return self.encode_prompt(prompt)

    def generate(self, prompt: Prompt, config: GenerationConfig | None = None, **overrides: Any) -> Generation:
        cfg = GenerationConfig.coerce(config)
        if overrides:
            cfg = cfg.replace(**overrides)
        ids = self.encode_prompt(prompt)
        if not ids:
            raise ValueError("empty prompt")
        if cfg.seed is not None:
            mx.random.seed(cfg.seed)
        sampler = make_sampler(temp=cfg.temperature, top_p=cfg.top_p if cfg.top_p < 1.0 else 0.0)
        tokens: list[int] = []
        finish = "length"
        stream_text = ""
        for response in stream_generate(self.module, self.tokenizer_wrapper, ids, max_tokens=cfg.max_new_tokens,
                                        sampler=sampler):
            if response.finish_reason == "stop":
                finish = "stop"  # the last token is EOS; not part of the completion
                break
            tokens.append(int(response.token))
            stream_text += response.text
            if cfg.stop and any(s in stream_text for s in cfg.stop):
                finish = "stop"
                break
        text, stopped = trim_at_stop(self._tokenizer.decode(tokens, skip_special_tokens=True), cfg.stop)
        if stopped:
            finish = "stop"
        return Generation(text=text, token_ids=tuple(tokens), finish_reason="stop" if finish == "stop" else "length",
                          prompt_tokens=len(ids))

    def stream(self, prompt: Prompt, config: GenerationConfig | None = None, **overrides: Any) -> Iterator[str]:
        """``generate``'s text as it is produced (mlx-lm's ``stream_generate``, the same stop/EOS rules)."""
        cfg = GenerationConfig.coerce(config)
        if overrides:
            cfg = cfg.replace(**overrides)
        ids = self.encode_prompt(prompt)
        if not ids:
            raise ValueError("empty prompt")

        def tokens() -> Iterator[int]:
            if cfg.seed is not None:
                mx.random.seed(cfg.seed)
            sampler = make_sampler(temp=cfg.temperature, top_p=cfg.top_p if cfg.top_p < 1.0 else 0.0)
            for response in stream_generate(self.module, self.tokenizer_wrapper, ids, max_tokens=cfg.max_new_tokens,
                                            sampler=sampler):
                if response.finish_reason == "stop":
                    return  # the last token is EOS; not part of the completion
                yield int(response.token)

        return stream_pieces(tokens(), lambda t: self._tokenizer.decode(t, skip_special_tokens=True), eos_id=None,
                           stops=cfg.stop)

    def export_gguf(self, path: PathLike, quant: str = "f16", *, ollama: bool = False) -> Any:
        """Verified merge, then a verified GGUF file (:func:`mindprint_kit.gguf_export.export_model`)."""
        from mindprint_kit.gguf_export import export_model

        return export_model(self, path, quant, ollama=ollama)

    # --- adapters and saving ----------------------------------------------------------------
    def add_adapter(self, config: AdapterConfig, seed: int | None = None) -> None:
        self.adapter_config = lora.apply_lora(self.module, config, self.seed if seed is None else seed)

    def remove_adapter(self) -> None:
        lora.remove_lora(self.module)
        self.adapter_config = None

    def load_adapter(self, path: PathLike) -> None:
        adapters.load_adapter(self, path)

    def save_adapter(self, path: PathLike, format: str = "peft") -> Path:
        return adapters.save_adapter(self, path, format=format)

    def save_pretrained(self, path: PathLike,
                        quantization: QuantizationConfig | Mapping[str, Any] | None = None) -> Path:
        """Merged, verified HF directory (a quantized base is dequantized); ``quantization`` re-quantizes it."""
        q = QuantizationConfig.coerce(quantization) if quantization is not None else None
        return merge.save_merged(self, path, q)


def ensure_mlx_model(model: object) -> MLXModel:
    """Return ``model`` if it is an MLXModel, else raise BackendMismatchError ("Expected MLXModel, got X")."""
    if not isinstance(model, MLXModel):
        raise BackendMismatchError(expected="MLXModel", got=type(model).__name__)
    return model
