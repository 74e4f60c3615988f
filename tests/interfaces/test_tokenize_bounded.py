"""Tokenising costs what can be kept: a huge record is encoded by a prefix, with the same kept ids (#20)."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from mindprint_interfaces import HFTokenizer
from mindprint_interfaces.data import (
    parse_preference_records,
    parse_sft_records,
    tokenize_preferences,
    tokenize_sft,
)


class Counting:
    """The real tokenizer, counting the characters it is asked to encode."""

    def __init__(self, inner: HFTokenizer) -> None:
        self.inner = inner
        self.encoded_chars = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    @property
    def has_chat_template(self) -> bool:
        return self.inner.has_chat_template

    def encode(self, text: str, *, add_special_tokens: bool = False) -> list[int]:
        self.encoded_chars += len(text)
        return self.inner.encode(text, add_special_tokens=add_special_tokens)

    def apply_chat_template(self, messages: Sequence[Mapping[str, object]], *, add_generation_prompt: bool = False
                            ) -> str:
        return self.inner.apply_chat_template(messages, add_generation_prompt=add_generation_prompt)


@pytest.fixture(scope="module")
def tok(tiny_model_dir: Path) -> HFTokenizer:
    from transformers import AutoTokenizer
    return HFTokenizer(AutoTokenizer.from_pretrained(str(tiny_model_dir)))


def _words(n_chars: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "日本", "x" * 30, "  ", "\n"]
    out: list[str] = []
    size = 0
    while size < n_chars:
        w = rng.choice(words) + " "
        out.append(w)
        size += len(w)
    return "".join(out)


def test_kept_ids_are_those_of_the_whole_text(tok: HFTokenizer) -> None:
    answer = _words(200_000)
    records = parse_sft_records([{"question": "Tell me everything.", "answer": answer}])
    full = tokenize_sft(tok, records, max_length=10**9)  # no budget in effect: the whole text
    counting = Counting(tok)
    cut = tokenize_sft(counting, records, max_length=64)  # type: ignore[arg-type]
    assert cut.truncated == 1 and cut.over_length == 1 and cut.longest_line == 1
    assert cut.longest_chars == len("Tell me everything.") + len(answer)
    [ex] = cut.examples
    assert ex.input_ids == full.examples[0].input_ids[:64]
    assert ex.labels == full.examples[0].labels[:64]
    assert counting.encoded_chars < 64 * 200  # a small factor of the kept length, not 200k


def test_a_huge_record_is_cheap(tok: HFTokenizer) -> None:
    answer = "word " * 2_000_000  # 10 MB
    counting = Counting(tok)
    cut = tokenize_sft(counting, parse_sft_records([{"question": "q", "answer": answer}]),  # type: ignore[arg-type]
                       max_length=64)
    assert len(cut.examples[0].input_ids) == 64
    assert counting.encoded_chars < 64 * 200
    pairs = parse_preference_records([{"prompt": "p", "chosen": answer, "rejected": "no"}])
    counting.encoded_chars = 0
    dpo = tokenize_preferences(counting, pairs, max_length=64)  # type: ignore[arg-type]
    assert dpo.truncated == 1 and len(dpo.examples[0].prompt_ids) + len(dpo.examples[0].chosen_ids) == 64
    assert counting.encoded_chars < 64 * 200


def test_short_records_are_unchanged(tok: HFTokenizer) -> None:
    records = parse_sft_records([{"question": "q", "answer": _words(300, seed=s)} for s in range(5)])
    a = tokenize_sft(tok, records, max_length=4096)
    assert a.truncated == 0 and a.over_length == 0 and a.longest_line == 0
