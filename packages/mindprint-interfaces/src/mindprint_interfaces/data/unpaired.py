"""Unpaired (KTO) records: ``{prompt, completion, label: true|false}``; paired files are unpaired as TRL does.

A file whose records all have ``chosen`` / ``rejected`` is a preference file: it is unpaired like TRL's
``unpair_preference_dataset`` (in chunks of 1000 records: the chunk's chosen completions, label true,
then its rejected ones, label false). Otherwise every record must be ``{prompt, completion, label}``
(``prompt`` a string or a list of messages), and every bad line is reported with its line and field.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DataIssue, DataValidationError
from ..messages import Message
from ..protocols import Tokenizer
from .jsonl import _merge, read_jsonl
from .records import PreferencePair
from .tokenize import TokenizedData, completion_ids, render_prompt
from .validate import _Issues, _numbered, _preference_record, _string, _topic, has_fields, prompt_messages

UNPAIR_CHUNK = 1000  # datasets.map's default batch size, which TRL's unpairing runs with


@dataclass(frozen=True)
class UnpairedExample:
    """One prompt, one completion, and whether the completion is desirable."""

    prompt: tuple[Message, ...]
    completion: str
    label: bool
    topic_id: str | None = None
    line: int = 0


@dataclass(frozen=True)
class TokenizedUnpaired:
    prompt_ids: tuple[int, ...]
    completion_ids: tuple[int, ...]
    label: bool
    line: int = 0


def _is_paired(record: Any) -> bool:
    return isinstance(record, Mapping) and "chosen" in record and "rejected" in record


def _unpaired_record(record: Any, line: int, issues: _Issues) -> UnpairedExample | None:
    if not has_fields(record, ("prompt", "completion", "label"), "an unpaired", line, issues):
        return None
    topic = _topic(record, line, issues)
    prompt = prompt_messages(record, line, issues)
    completion = _string(record, "completion", line, issues)
    label = record["label"]
    if not isinstance(label, bool):
        issues.add(line, "label", f"must be true or false, got {label!r}")
        return None
    if prompt is None or completion is None:
        return None
    return UnpairedExample(prompt, completion, label, topic, line)


def unpair(pairs: Sequence[PreferencePair]) -> list[UnpairedExample]:
    """TRL's ``unpair_preference_dataset`` order: per chunk of 1000 pairs, the chosen (true) then the rejected."""
    out: list[UnpairedExample] = []
    for start in range(0, len(pairs), UNPAIR_CHUNK):
        chunk = pairs[start:start + UNPAIR_CHUNK]
        out += [UnpairedExample(p.prompt, p.chosen, True, p.topic_id, p.line) for p in chunk]
        out += [UnpairedExample(p.prompt, p.rejected, False, p.topic_id, p.line) for p in chunk]
    return out


def parse_unpaired_records(records: Iterable[Any], source: str = "<records>") -> list[UnpairedExample]:
    """Validate KTO records (dicts or ``(line, dict)`` pairs); an all-paired input is unpaired."""
    numbered = list(_numbered(records))
    issues = _Issues()
    if numbered and all(_is_paired(rec) for _, rec in numbered):
        pairs = [p for line, rec in numbered if (p := _preference_record(rec, line, issues)) is not None]
        if issues.items:
            raise DataValidationError(source, issues.items)
        return unpair(pairs)
    out = [ex for line, rec in numbered if (ex := _unpaired_record(rec, line, issues)) is not None]
    if issues.items:
        raise DataValidationError(source, issues.items)
    if not out:
        raise DataValidationError(source, [DataIssue(0, "", "no records (the data is empty)")])
    return out


def as_unpaired_examples(data: Sequence[Any], source: str = "<records>") -> list[UnpairedExample]:
    """Accept already-parsed examples (or preference pairs, unpaired) or raw dicts."""
    if data and all(isinstance(d, UnpairedExample) for d in data):
        return list(data)
    if data and all(isinstance(d, PreferencePair) for d in data):
        return unpair(list(data))
    return parse_unpaired_records(data, source)


def load_unpaired_jsonl(path: str | Path) -> list[UnpairedExample]:
    try:
        rows = read_jsonl(path)
    except DataValidationError as exc:
        raise _merge(exc, path, parse_unpaired_records) from None
    return parse_unpaired_records(rows, str(path))


def tokenize_unpaired(tokenizer: Tokenizer, examples: Sequence[UnpairedExample], *, max_length: int,
                      truncation: str = "truncate", source: str = "<records>") -> TokenizedData[TokenizedUnpaired]:
    """Tokenize KTO records; prompt + completion is cut to ``max_length`` (keep start) per ``truncation``."""
    out = TokenizedData[TokenizedUnpaired]([])
    errors: list[DataIssue] = []
    for ex in examples:
        prompt = render_prompt(tokenizer, ex.prompt)
        completion = completion_ids(tokenizer, ex.prompt, ex.completion, ex.line)
        if len(prompt) + len(completion) > max_length:
            issue = DataIssue(ex.line, "completion", f"{len(prompt) + len(completion)} tokens exceed "
                                                     f"max_length={max_length}")
            if truncation == "error":
                errors.append(issue)
                continue
            if truncation == "drop" or len(prompt) >= max_length:
                out.dropped.append(issue)
                continue
            completion = completion[:max_length - len(prompt)]
            out.truncated += 1
        out.examples.append(TokenizedUnpaired(tuple(prompt), tuple(completion), ex.label, ex.line))
    if errors:
        raise DataValidationError(source, errors)
    if not out.examples:
        raise DataValidationError(source, out.dropped or [DataIssue(0, "", "no trainable records")])
    return out
