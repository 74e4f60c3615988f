"""PyTorchModel: a transformers causal LM (optionally wrapped by PEFT) behind the Model protocol."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from mindprint_interfaces import (
    BackendMismatchError,
    ForwardOutput,
    Generation,
    GenerationConfig,
    HFTokenizer,
    QuantizationConfig,
)
from mindprint_interfaces.data import IGNORE_INDEX
from mindprint_interfaces.protocols import PathLike, Prompt
from mindprint_kit.prompts import encode_prompt, trim_at_stop

from . import adapters, merge, streaming
from .device import DTYPES

BACKEND_NAME = "pytorch"


def _is_peft(module: Any) -> bool:
    from peft import PeftModel

    return isinstance(module, PeftModel)


class PyTorchModel:
    """A causal LM on one torch device. ``hf_model`` is a ``PreTrainedModel`` or a ``peft.PeftModel`` around one."""

    quantization: QuantizationConfig | None = None  # the base's bitsandbytes quantization (QLoRA), set on load

    def __init__(self, hf_model: Any, hf_tokenizer: Any, *, name_or_path: str = "") -> None:
        self.hf_model = hf_model
        self.hf_tokenizer = hf_tokenizer
        self._tokenizer = HFTokenizer(hf_tokenizer)
        self.name_or_path = name_or_path or str(getattr(self.base_model.config, "_name_or_path", ""))
        if getattr(hf_tokenizer, "pad_token_id", None) is None and getattr(hf_tokenizer, "eos_token", None) is not None:
            hf_tokenizer.pad_token = hf_tokenizer.eos_token

    # -- protocol properties -------------------------------------------------------------------------------------
    @property
    def backend_name(self) -> str:
        return BACKEND_NAME

    @property
    def tokenizer(self) -> HFTokenizer:
        return self._tokenizer

    @property
    def torch_device(self) -> torch.device:
        return next(self.hf_model.parameters()).device  # type: ignore[no-any-return]

    @property
    def torch_dtype(self) -> torch.dtype:
        return self.base_model.dtype  # type: ignore[no-any-return]

    @property
    def device(self) -> str:
        dev = self.torch_device
        return dev.type if dev.index is None or dev.type != "cuda" else f"cuda:{dev.index}"

    @property
    def dtype(self) -> str:
        names = {v: k for k, v in DTYPES.items()}
        return names.get(self.torch_dtype, str(self.torch_dtype).removeprefix("torch."))

    @property
    def num_layers(self) -> int:
        return int(self.base_model.config.get_text_config().num_hidden_layers)

    @property
    def base_model(self) -> Any:
        """The underlying transformers model (inside the PEFT wrapper when there is one)."""
        return self.hf_model.get_base_model() if _is_peft(self.hf_model) else self.hf_model

    def has_adapter(self) -> bool:
        return _is_peft(self.hf_model)

    @property
    def pad_id(self) -> int:
        pad = self._tokenizer.pad_token_id
        return int(pad) if pad is not None else 0

    # -- numerics ------------------------------------------------------------------------------------------------
    def _batch(self, rows: Sequence[Sequence[int]], fill: int) -> torch.Tensor:
        width = max(len(r) for r in rows)
        out = torch.full((len(rows), width), fill, dtype=torch.long)
        for i, r in enumerate(rows):
            out[i, : len(r)] = torch.tensor(list(r), dtype=torch.long)
        return out.to(self.torch_device)

    def forward(self, input_ids: Sequence[Sequence[int]], labels: Sequence[Sequence[int]] | None = None,
                attention_mask: Sequence[Sequence[int]] | None = None) -> ForwardOutput:
        """Logits (batch, seq, vocab) for right-padded ``input_ids``; loss = mean CE over labels != -100 (shifted)."""
        if not input_ids or any(len(r) == 0 for r in input_ids):
            raise ValueError("forward: input_ids must be a non-empty list of non-empty token lists")
        ids = self._batch(input_ids, self.pad_id)
        mask = self._batch(attention_mask, 0) if attention_mask is not None else self._batch(
            [[1] * len(r) for r in input_ids], 0)
        with torch.no_grad():
            logits = self.hf_model(input_ids=ids, attention_mask=mask, use_cache=False).logits
        loss: float | None = None
        if labels is not None:
            lab = self._batch(labels, IGNORE_INDEX)
            if lab.shape != ids.shape:
                raise ValueError(f"forward: labels shape {tuple(lab.shape)} does not match input_ids {tuple(ids.shape)}")
            shift_logits = logits[:, :-1].float()
            shift_labels = lab[:, 1:]
            loss = float(F.cross_entropy(shift_logits.reshape(-1, shift_logits.size(-1)), shift_labels.reshape(-1),
                                         ignore_index=IGNORE_INDEX).item())
        return ForwardOutput(logits=logits, loss=loss)

    def sequence_logprobs(self, prompts: Sequence[Sequence[int]], completions: Sequence[Sequence[int]]) -> list[float]:
        """Sum of log p(completion token | prefix) for each (prompt, completion) pair."""
        if len(prompts) != len(completions):
            raise ValueError(f"sequence_logprobs: {len(prompts)} prompts but {len(completions)} completions")
        rows = [list(p) + list(c) for p, c in zip(prompts, completions)]
        labels = [[IGNORE_INDEX] * len(p) + list(c) for p, c in zip(prompts, completions)]
        logits = self.forward(rows).logits.float()
        lab = self._batch(labels, IGNORE_INDEX)[:, 1:]
        logp = torch.log_softmax(logits[:, :-1], dim=-1)
        mask = lab != IGNORE_INDEX
        picked = torch.gather(logp, 2, lab.clamp(min=0).unsqueeze(-1)).squeeze(-1) * mask
        return [float(v) for v in picked.sum(dim=1).tolist()]

    def next_token_logprobs(self, input_ids: Sequence[int]) -> list[float]:
        logits = self.forward([list(input_ids)]).logits[0, -1].float()
        return [float(v) for v in torch.log_softmax(logits, dim=-1).tolist()]

    # -- generation ----------------------------------------------------------------------------------------------
    def encode_prompt(self, prompt: Prompt) -> list[int]:
        """Prompt -> ids, the same on every backend (:func:`mindprint_kit.prompts.encode_prompt`)."""
        return encode_prompt(self._tokenizer, prompt)

    def generate(self, prompt: Prompt, config: GenerationConfig | None = None, **overrides: Any) -> Generation:
        cfg = GenerationConfig.coerce(config)
        if overrides:
            cfg = cfg.replace(**overrides)
        prompt_ids = self.encode_prompt(prompt)
        ids = torch.tensor([prompt_ids], dtype=torch.long, device=self.torch_device)
        eos = self._tokenizer.eos_token_id
        kwargs: dict[str, Any] = {"max_new_tokens": cfg.max_new_tokens, "pad_token_id": self.pad_id}
        if eos is not None:
            kwargs["eos_token_id"] = eos
        if cfg.temperature > 0:
            kwargs.update(do_sample=True, temperature=cfg.temperature, top_p=cfg.top_p, top_k=None)
            if cfg.seed is not None:
                torch.manual_seed(cfg.seed)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if cfg.stop:
            kwargs.update(stop_strings=list(cfg.stop), tokenizer=self.hf_tokenizer)
        was_training = self.hf_model.training
        self.hf_model.eval()
        try:
            with torch.no_grad():
                out = self.hf_model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **kwargs)
        finally:
            if was_training:
                self.hf_model.train()
        new = [int(t) for t in out[0, len(prompt_ids):].tolist()]
        finish: Any = "length"
        if eos is not None and eos in new:
            new = new[: new.index(eos)]
            finish = "stop"
        text, stopped = trim_at_stop(self._tokenizer.decode(new), cfg.stop)
        if stopped:
            finish = "stop"
        return Generation(text=text, token_ids=tuple(new), finish_reason=finish, prompt_tokens=len(prompt_ids))

    def stream(self, prompt: Prompt, config: GenerationConfig | None = None, **overrides: Any) -> Iterator[str]:
        """``generate``'s text as it is produced (transformers' ``generate`` with a token streamer)."""
        cfg = GenerationConfig.coerce(config)
        if overrides:
            cfg = cfg.replace(**overrides)
        return streaming.stream(self, self.encode_prompt(prompt), cfg)

    def export_gguf(self, path: PathLike, quant: str = "f16", *, ollama: bool = False) -> Any:
        """Verified merge, then a verified GGUF file (:func:`mindprint_kit.gguf_export.export_model`)."""
        from mindprint_kit.gguf_export import export_model

        return export_model(self, path, quant, ollama=ollama)

    # -- persistence (implemented in adapters.py / merge.py) ------------------------------------------------------
    def save_pretrained(self, path: PathLike) -> Path:
        return merge.save_merged(self, path)

    def load_adapter(self, path: PathLike) -> None:
        adapters.load_adapter(self, path)

    def save_adapter(self, path: PathLike, format: str = "peft") -> Path:
        return adapters.save_adapter(self, path, format=format)

    def __repr__(self) -> str:
        return (f"PyTorchModel({self.name_or_path!r}, device={self.device!r}, dtype={self.dtype!r}, "
                f"adapter={self.has_adapter()})")


TorchModel = PyTorchModel


def ensure_torch_model(model: object) -> PyTorchModel:
    """Return ``model`` if it is a PyTorchModel, else raise BackendMismatchError ("Expected PyTorchModel, got X")."""
    if not isinstance(model, PyTorchModel):
        raise BackendMismatchError(expected="PyTorchModel", got=type(model).__name__)
    return model
