"""Shared data layer: read, validate and tokenize training records identically for every backend."""

from ..messages import Message
from .jsonl import load_preference_jsonl, load_sft_jsonl, read_jsonl, write_jsonl
from .records import PreferencePair, SFTExample
from .tokenize import (
    IGNORE_INDEX,
    TokenizedData,
    TokenizedExample,
    TokenizedPair,
    completion_ids,
    conversation_segments,
    render_prompt,
    tokenize_preferences,
    tokenize_sft,
)
from .validate import as_preference_pairs, as_sft_examples, parse_preference_records, parse_sft_records

__all__ = [
    "IGNORE_INDEX", "Message", "PreferencePair", "SFTExample", "TokenizedData", "TokenizedExample", "TokenizedPair",
    "as_preference_pairs", "as_sft_examples", "completion_ids", "conversation_segments", "load_preference_jsonl",
    "load_sft_jsonl", "parse_preference_records", "parse_sft_records", "read_jsonl", "render_prompt",
    "tokenize_preferences", "tokenize_sft", "write_jsonl",
]
from .unpaired import (  # noqa: E402
    TokenizedUnpaired,
    UnpairedExample,
    as_unpaired_examples,
    load_unpaired_jsonl,
    parse_unpaired_records,
    tokenize_unpaired,
    unpair,
)

__all__ += ["TokenizedUnpaired", "UnpairedExample", "as_unpaired_examples", "load_unpaired_jsonl",
            "parse_unpaired_records", "tokenize_unpaired", "unpair"]
from .quiz import (  # noqa: E402
    FactCheck,
    QuizExample,
    QuizFacts,
    as_quiz_examples,
    load_quiz_jsonl,
    parse_quiz_records,
)

__all__ += ["FactCheck", "QuizExample", "QuizFacts", "as_quiz_examples", "load_quiz_jsonl", "parse_quiz_records"]
