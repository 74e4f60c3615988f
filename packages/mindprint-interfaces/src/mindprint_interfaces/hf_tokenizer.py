"""Adapter from a Hugging Face tokenizer object to the :class:`Tokenizer` protocol.

Duck-typed (no transformers import), so both backends wrap the same HF tokenizer the same
way — mlx-lm's ``TokenizerWrapper`` forwards these calls to the HF tokenizer it holds — and
the data layer produces identical ids on either side.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


class HFTokenizer:
    """Tokenizer protocol over ``transformers.PreTrainedTokenizerBase`` (or anything shaped like it)."""

    def __init__(self, hf_tokenizer: Any) -> None:
        self.hf = hf_tokenizer

    @property
    def eos_token_id(self) -> int | None:
        value = getattr(self.hf, "eos_token_id", None)
        return int(value) if value is not None else None

    @property
    def pad_token_id(self) -> int | None:
        value = getattr(self.hf, "pad_token_id", None)
        return int(value) if value is not None else self.eos_token_id

    @property
    def bos_token_id(self) -> int | None:
        value = getattr(self.hf, "bos_token_id", None)
        return int(value) if value is not None else None

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.hf, "chat_template", None))

    def encode(self, text: str, *, add_special_tokens: bool = False) -> list[int]:
        return [int(t) for t in self.hf.encode(text, add_special_tokens=add_special_tokens)]

    def decode(self, token_ids: Sequence[int], *, skip_special_tokens: bool = True) -> str:
        return str(self.hf.decode(list(token_ids), skip_special_tokens=skip_special_tokens))

    def apply_chat_template(self, messages: Sequence[Mapping[str, object]], *, add_generation_prompt: bool = False) -> str:
        text = self.hf.apply_chat_template(
            [dict(m) for m in messages], tokenize=False, add_generation_prompt=add_generation_prompt
        )
        return str(text)

    def __len__(self) -> int:
        return len(self.hf)
