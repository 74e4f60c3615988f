"""Quiz records: SFT-shaped question/answer records that may carry the answer's key facts.

A quiz record is any SFT record shape (``question``/``answer``, ``instruction``/``output``,
``prompt``/``completion`` or ``messages``) with its ``topic_id``, plus two optional fields:

- ``must_include``: a list of terms a right answer contains. An entry is a string, or a list of
  strings that are alternatives (any one of them counts), e.g. ``["Jupiter"]`` or
  ``[["sun", "sunlight"]]``. Every entry must occur in the record's own reference answer (at least one
  alternative of it), so a typo is caught here rather than scoring every answer as wrong;
- ``must_not_include``: a list of known wrong answers (strings) that a right answer does not contain,
  e.g. ``["Saturn", "Mercury"]`` for "Which planet is the largest?". None may occur in the reference
  answer. Pick terms a right answer would not mention in passing: a plain word match cannot tell
  "it is not Saturn" from "it is Saturn".

Terms match like voice markers: case-insensitively, as whole words at the term's word edges, with
whitespace collapsed. A record's fact score (:meth:`QuizFacts.score`) is 0 when the answer contains a
wrong term, else the fraction of ``must_include`` entries it contains (1.0 when it lists none).
Every problem is reported with its line and field, like the other record kinds.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DataIssue, DataValidationError
from .jsonl import _merge, read_jsonl
from .records import SFTExample
from .validate import _Issues, _numbered, _sft_record

FACT_KEYS = ("must_include", "must_not_include")


def _term_pattern(term: str) -> re.Pattern[str]:
    text = term.strip()
    body = re.escape(re.sub(r"\s+", " ", text.lower()))
    start = r"(?<!\w)" if re.match(r"\w", text) else ""
    end = r"(?!\w)" if re.search(r"\w$", text) else ""
    return re.compile(start + body + end)


def contains_term(text: str, term: str) -> bool:
    """``term`` occurs in ``text`` (case-insensitive, whole words at the term's word edges)."""
    norm = " " + re.sub(r"\s+", " ", text.lower()) + " "
    return _term_pattern(term).search(norm) is not None


@dataclass(frozen=True)
class FactCheck:
    """What :meth:`QuizFacts.check` found in one answer."""

    found: tuple[str, ...]  # the must_include entries present (their first alternative)
    missing: tuple[str, ...]  # the must_include entries absent
    wrong: tuple[str, ...]  # the must_not_include terms present
    score: float


@dataclass(frozen=True)
class QuizFacts:
    """The key facts of one quiz answer: required terms (each a tuple of alternatives) and wrong terms."""

    must_include: tuple[tuple[str, ...], ...] = ()
    must_not_include: tuple[str, ...] = ()

    @property
    def enabled(self) -> bool:
        return bool(self.must_include or self.must_not_include)

    def check(self, text: str) -> FactCheck:
        found = tuple(alts[0] for alts in self.must_include if any(contains_term(text, a) for a in alts))
        missing = tuple(alts[0] for alts in self.must_include if not any(contains_term(text, a) for a in alts))
        wrong = tuple(t for t in self.must_not_include if contains_term(text, t))
        if wrong:
            score = 0.0
        elif self.must_include:
            score = len(found) / len(self.must_include)
        else:
            score = 1.0
        return FactCheck(found, missing, wrong, score)

    def score(self, text: str) -> float:
        return self.check(text).score

    def to_record(self) -> dict[str, Any]:
        """The record fields (``must_include`` / ``must_not_include``) that give these facts back."""
        out: dict[str, Any] = {}
        if self.must_include:
            out["must_include"] = [alts[0] if len(alts) == 1 else list(alts) for alts in self.must_include]
        if self.must_not_include:
            out["must_not_include"] = list(self.must_not_include)
        return out


@dataclass(frozen=True)
class QuizExample(SFTExample):
    """An SFT example (the question and its reference answer) with the answer's key facts."""

    facts: QuizFacts = field(default_factory=QuizFacts)


def _term(value: Any, where: str, line: int, issues: _Issues) -> str | None:
    if not isinstance(value, str):
        issues.add(line, where, f"must be a string, got {type(value).__name__}")
        return None
    if not value.strip():
        issues.add(line, where, "is empty")
        return None
    return value.strip()


def _facts(record: Mapping[str, Any], reference: str, line: int, issues: _Issues) -> QuizFacts | None:
    before = len(issues.items)
    include: list[tuple[str, ...]] = []
    raw_in = record.get("must_include", [])
    if not isinstance(raw_in, list):
        issues.add(line, "must_include", f"must be a list of terms, got {type(raw_in).__name__}")
    else:
        for i, entry in enumerate(raw_in):
            where = f"must_include[{i}]"
            if isinstance(entry, list):
                if not entry:
                    issues.add(line, where, "an empty list of alternatives")
                    continue
                alts = [_term(a, f"{where}[{j}]", line, issues) for j, a in enumerate(entry)]
                if any(a is None for a in alts):
                    continue
                terms = tuple(a for a in alts if a is not None)
            else:
                one = _term(entry, where, line, issues)
                if one is None:
                    continue
                terms = (one,)
            if not any(contains_term(reference, t) for t in terms):
                shown = " or ".join(repr(t) for t in terms)
                issues.add(line, where, f"{shown} does not occur in the record's answer (a required term must be "
                                        "part of the right answer)")
                continue
            include.append(terms)
    wrong: list[str] = []
    raw_out = record.get("must_not_include", [])
    if not isinstance(raw_out, list):
        issues.add(line, "must_not_include", f"must be a list of terms, got {type(raw_out).__name__}")
    else:
        for i, entry in enumerate(raw_out):
            where = f"must_not_include[{i}]"
            term = _term(entry, where, line, issues)
            if term is None:
                continue
            if contains_term(reference, term):
                issues.add(line, where, f"{term!r} occurs in the record's own answer (a wrong answer must not be "
                                        "part of the right one)")
                continue
            wrong.append(term)
    if len(issues.items) > before:
        return None
    return QuizFacts(tuple(include), tuple(wrong))


def _quiz_record(record: Any, line: int, issues: _Issues) -> QuizExample | None:
    ex = _sft_record(record, line, issues)
    if ex is None:
        return None
    facts = _facts(record, ex.reference_answer, line, issues)
    if facts is None:
        return None
    return QuizExample(ex.messages, ex.topic_id, ex.line, facts)


def parse_quiz_records(records: Iterable[Any], source: str = "<records>") -> list[QuizExample]:
    """Validate quiz records (dicts, or ``(line, dict)`` pairs from :func:`read_jsonl`); every problem at once."""
    issues = _Issues()
    out = [q for line, rec in _numbered(records) if (q := _quiz_record(rec, line, issues)) is not None]
    if issues.items:
        raise DataValidationError(source, issues.items)
    if not out:
        raise DataValidationError(source, [DataIssue(0, "", "no records (the data is empty)")])
    return out


def as_quiz_examples(data: Sequence[Any], source: str = "<records>") -> list[QuizExample]:
    """Quiz examples from raw dicts, quiz examples, or plain SFT examples (which then carry no facts)."""
    if data and all(isinstance(d, SFTExample) for d in data):
        return [d if isinstance(d, QuizExample) else QuizExample(d.messages, d.topic_id, d.line) for d in data]
    return parse_quiz_records(data, source)


def load_quiz_jsonl(path: str | Path) -> list[QuizExample]:
    """Read and validate a quiz file; all bad lines (JSON, record shape and facts) are reported together."""
    try:
        rows = read_jsonl(path)
    except DataValidationError as exc:
        raise _merge(exc, path, parse_quiz_records) from None
    return parse_quiz_records(rows, str(path))
