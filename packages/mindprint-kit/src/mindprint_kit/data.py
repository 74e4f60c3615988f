"""Validate + tokenize a trainer's records with the shared data layer, with the stats every result reports.

Both backends (and every method) go through here, so the same records give the same token ids,
the same truncation and the same ``num_examples`` / ``truncated`` / ``dropped`` on either backend.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from mindprint_interfaces.configs import SFTConfig, TrainConfigBase
from mindprint_interfaces.data import (
    TokenizedExample,
    TokenizedPair,
    TokenizedUnpaired,
    as_preference_pairs,
    as_sft_examples,
    as_unpaired_examples,
    tokenize_preferences,
    tokenize_sft,
    tokenize_unpaired,
)
from mindprint_interfaces.protocols import Tokenizer

from .packing import PackedExample, pack_examples

E = TypeVar("E")


@dataclass(frozen=True)
class Prepared(Generic[E]):
    """Tokenized examples of one run and the data stats its TrainingResult carries."""

    examples: list[E]
    truncated: int
    dropped: int
    longest_line: int = 0  # the longest over-long record (0: none): its line and length in characters
    longest_chars: int = 0
    packed_from: int = 0  # packing: the number of examples packed into ``examples`` (0: not packed)

    @property
    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = {"num_examples": self.packed_from or len(self.examples), "truncated": self.truncated,
                                 "dropped": self.dropped}
        if self.packed_from:
            stats["packed_sequences"] = len(self.examples)
        if self.longest_line:
            stats.update(truncated_longest_line=self.longest_line, truncated_longest_chars=self.longest_chars)
        return stats


def prepare_sft(tokenizer: Tokenizer, data: Sequence[Mapping[str, Any]], config: SFTConfig,
                source: str) -> Prepared[TokenizedExample] | Prepared[PackedExample]:
    """The tokenized examples, or with ``config.packing`` the rows they pack into (:mod:`.packing`)."""
    tokenized = tokenize_sft(tokenizer, as_sft_examples(data, source), max_length=config.max_length,
                             truncation=config.truncation, completion_only_loss=config.completion_only_loss,
                             source=source)
    examples = list(tokenized.examples)
    if config.packing and examples:
        return Prepared(pack_examples(examples, config.max_length), tokenized.truncated, len(tokenized.dropped),
                        tokenized.longest_line, tokenized.longest_chars, packed_from=len(examples))
    return Prepared(examples, tokenized.truncated, len(tokenized.dropped), tokenized.longest_line,
                    tokenized.longest_chars)


def prepare_preferences(tokenizer: Tokenizer, data: Sequence[Mapping[str, Any]], config: TrainConfigBase,
                        source: str) -> Prepared[TokenizedPair]:
    tokenized = tokenize_preferences(tokenizer, as_preference_pairs(data, source), max_length=config.max_length,
                                     truncation=config.truncation, source=source)
    return Prepared(list(tokenized.examples), tokenized.truncated, len(tokenized.dropped), tokenized.longest_line,
                    tokenized.longest_chars)


def prepare_unpaired(tokenizer: Tokenizer, data: Sequence[Any], config: TrainConfigBase,
                     source: str) -> Prepared[TokenizedUnpaired]:
    """KTO records (paired preference records are unpaired as TRL does)."""
    tokenized = tokenize_unpaired(tokenizer, as_unpaired_examples(data, source), max_length=config.max_length,
                                  truncation=config.truncation, source=source)
    return Prepared(list(tokenized.examples), tokenized.truncated, len(tokenized.dropped))
