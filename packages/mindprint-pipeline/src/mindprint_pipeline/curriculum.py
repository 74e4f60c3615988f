"""Curriculum: SFT records and preference pairs grouped into units -> chapters -> topics.

Every SFT record names its topic as ``unit/chapter/topic`` in ``topic_id`` (or ``source``).
Order is stable: units, chapters and topics appear in the order of their first record in the
file. Preference pairs attach to a topic by their own ``topic_id`` or, without one, by prompt
match against the topic's SFT prompts; pairs that match no topic are kept in
:attr:`Curriculum.unmatched_preferences` (reported, not silently dropped).

Topic ids: ``unit/chapter/topic``, three parts separated by ``/``. A part (spaces around it are
stripped) is 1 to :data:`MAX_ID_PART` characters of any printable Unicode text except ``/`` and
``\``; it may not be ``.`` or ``..`` and may not hold NUL or other control characters. A record
breaking this is refused with its file and line. Ids become directory names through
:func:`id_dirname`, which is injective: two different ids never share a directory.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mindprint_interfaces import DataIssue, DataValidationError
from mindprint_interfaces.data import (
    PreferencePair,
    QuizExample,
    SFTExample,
    as_preference_pairs,
    as_quiz_examples,
    as_sft_examples,
    load_preference_jsonl,
    load_quiz_jsonl,
    load_sft_jsonl,
)
from mindprint_interfaces.validation import short, suggest

SFT_FILE = "sft_data.jsonl"
PREFERENCE_FILE = "preference_data.jsonl"

RecordsInput = str | Path | Sequence[Any]


@dataclass
class Topic:
    """One topic: its SFT examples, its preference pairs and (optionally) explicit quiz records."""

    id: str  # "unit/chapter/topic"
    index: int  # 0-based position in the whole curriculum
    sft: list[SFTExample] = field(default_factory=list)
    preferences: list[PreferencePair] = field(default_factory=list)
    quiz: list[SFTExample] = field(default_factory=list)

    @property
    def unit(self) -> str:
        return self.id.split("/")[0]

    @property
    def chapter(self) -> str:
        return self.id.split("/")[1]

    @property
    def name(self) -> str:
        return self.id.split("/")[2]

    @property
    def eval_examples(self) -> list[SFTExample]:
        """What the evaluator sees: the quiz when given, else the topic's own SFT examples."""
        return self.quiz if self.quiz else self.sft

    def sft_records(self) -> list[dict[str, Any]]:
        return [sft_to_record(ex) for ex in self.sft]

    def preference_records(self) -> list[dict[str, Any]]:
        return [preference_to_record(p) for p in self.preferences]

    def eval_records(self, limit: int | None = None) -> list[dict[str, Any]]:
        examples = self.eval_examples if limit is None else self.eval_examples[:limit]
        return [sft_to_record(ex) for ex in examples]


@dataclass
class Chapter:
    unit: str
    name: str
    topics: list[Topic] = field(default_factory=list)

    @property
    def id(self) -> str:
        return f"{self.unit}/{self.name}"


@dataclass
class Unit:
    name: str
    chapters: list[Chapter] = field(default_factory=list)

    @property
    def topics(self) -> list[Topic]:
        return [t for c in self.chapters for t in c.topics]


@dataclass(frozen=True)
class UnmatchedPair:
    """A preference pair that attaches to no topic, and why."""

    line: int
    prompt: str
    topic_id: str | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"line": self.line, "prompt": self.prompt, "topic_id": self.topic_id, "reason": self.reason}


@dataclass
class Curriculum:
    units: list[Unit]
    unmatched_preferences: list[UnmatchedPair] = field(default_factory=list)

    @property
    def topics(self) -> list[Topic]:
        return [t for u in self.units for t in u.topics]

    def topic(self, topic_id: str) -> Topic:
        for t in self.topics:
            if t.id == topic_id:
                return t
        raise KeyError(f"unknown topic {topic_id!r}{suggest(topic_id, [t.id for t in self.topics])}")

    def unit(self, name: str) -> Unit:
        for u in self.units:
            if u.name == name:
                return u
        raise KeyError(f"unknown unit {name!r}{suggest(name, [u.name for u in self.units])}")

    def replay_records(self, topic: Topic, limit: int) -> list[dict[str, Any]]:
        """Up to ``limit`` SFT records of the topics before ``topic`` (rehearsal against forgetting them).

        Round-robin over the earlier topics from the first one on, each topic's records in file order: the
        first record of every earlier topic, then the second of every one, ... So an early topic, the one
        most trained over, is replayed as much as a recent one, and a data author controls what is replayed
        by putting a topic's key records first.
        """
        earlier = [t.sft for t in self.topics if t.index < topic.index and t.sft]
        picked: list[dict[str, Any]] = []
        for position in range(max((len(records) for records in earlier), default=0)):
            for records in earlier:
                if len(picked) >= limit:
                    return picked
                if position < len(records):
                    picked.append(sft_to_record(records[position]))
        return picked

    def fingerprint(self) -> str:
        """A hash of the grouped data (topic ids, records, pairs): a resume refuses changed data."""
        payload = [
            {"id": t.id, "sft": t.sft_records(), "pref": t.preference_records(), "quiz": t.eval_records()}
            for t in self.topics
        ]
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode("utf-8")).hexdigest()

    def summary(self) -> str:
        lines = []
        for u in self.units:
            lines.append(f"unit {u.name}")
            for c in u.chapters:
                lines.append(f"  chapter {c.name}")
                for t in c.topics:
                    lines.append(f"    topic {t.name}: {len(t.sft)} SFT, {len(t.preferences)} pairs"
                                 + (f", {len(t.quiz)} quiz" if t.quiz else ""))
        if self.unmatched_preferences:
            lines.append(f"{len(self.unmatched_preferences)} preference pair(s) match no topic")
        return "\n".join(lines)


# -- record <-> dict ------------------------------------------------------------------------------

def sft_to_record(ex: SFTExample) -> dict[str, Any]:
    record: dict[str, Any] = {"messages": [dict(m) for m in ex.messages]}
    if ex.topic_id is not None:
        record["topic_id"] = ex.topic_id
    if isinstance(ex, QuizExample):
        record.update(ex.facts.to_record())  # the quiz's key facts travel to the evaluator
    return record


def preference_to_record(pair: PreferencePair) -> dict[str, Any]:
    record: dict[str, Any] = {"prompt": [dict(m) for m in pair.prompt], "chosen": pair.chosen, "rejected": pair.rejected}
    if pair.topic_id is not None:
        record["topic_id"] = pair.topic_id
    return record


def sft_prompt_text(ex: SFTExample) -> str:
    users = [m["content"] for m in ex.prompt_messages if m["role"] == "user"]
    return users[-1] if users else ""


def normalize_prompt(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


# -- loading ---------------------------------------------------------------------------------------

def load_sft(data: RecordsInput | None, data_dir: str | Path, source: str = SFT_FILE) -> list[SFTExample]:
    """SFT examples from a list of records, a JSONL path, or ``data_dir/sft_data.jsonl``."""
    if data is None:
        return load_sft_jsonl(_required_file(Path(data_dir) / SFT_FILE, "SFT data"))
    if isinstance(data, (str, Path)):
        return load_sft_jsonl(_required_file(Path(data), "SFT data"))
    return as_sft_examples(list(data), source)


def load_preferences(data: RecordsInput | None, data_dir: str | Path,
                     source: str = PREFERENCE_FILE) -> list[PreferencePair]:
    """Preference pairs; an explicitly passed empty list means "no DPO" (a missing file is an error)."""
    if data is None:
        return load_preference_jsonl(_required_file(Path(data_dir) / PREFERENCE_FILE, "preference data"))
    if isinstance(data, (str, Path)):
        return load_preference_jsonl(_required_file(Path(data), "preference data"))
    items = list(data)
    return as_preference_pairs(items, source) if items else []


def _required_file(path: Path, what: str) -> Path:
    if not path.is_file():
        hint = " (pass the records explicitly, or set data_dir to the directory holding it)"
        raise DataValidationError(str(path), [DataIssue(0, "", f"{what} file not found{hint}")])
    return path


# -- grouping --------------------------------------------------------------------------------------

MAX_ID_PART = 100  # characters per part of a topic id
_MAX_DIRNAME = 120  # longer directory names end in a hash of the id


def topic_id_problem(topic_id: str) -> str | None:
    """Why ``topic_id`` is not a valid ``unit/chapter/topic`` id (None when it is)."""
    parts = [p.strip() for p in topic_id.strip().strip("/").split("/")]
    if len(parts) != 3 or not all(parts):
        return "must look like 'unit/chapter/topic' (three non-empty parts)"
    for part in parts:
        if part in (".", ".."):
            return f"a part may not be {part!r}"
        if len(part) > MAX_ID_PART:
            return f"a part is {len(part)} characters long (at most {MAX_ID_PART})"
        bad = next((c for c in part if not c.isprintable() or c == "\\"), None)
        if bad is not None:
            return f"a part holds the character {bad!r} (NUL, control characters and '\\' are not allowed)"
    return None


def split_topic_id(topic_id: str) -> tuple[str, str, str] | None:
    if topic_id_problem(topic_id) is not None:
        return None
    parts = [p.strip() for p in topic_id.strip().strip("/").split("/")]
    return parts[0], parts[1], parts[2]


def id_dirname(text: str) -> str:
    """A directory name for an id (or one part of it), injective: letters, digits (any script), ``_`` and ``-``
    stay; every other character is ``%XX`` (UTF-8, ``%`` and ``.`` included), so ``.``, ``..`` and ``_`` map
    to ``%2E``, ``%2E%2E`` and ``_``. Names over 120 characters keep 100 and end in ``~`` + a hash of the text
    (``~`` never comes out of the escaping)."""
    out = "".join(c if (c.isalnum() or c in "_-") else "".join(f"%{b:02X}" for b in c.encode("utf-8"))
                  for c in text)
    if not out:
        return "%"  # the empty string (not a valid id part; never produced by another text)
    if len(out) > _MAX_DIRNAME:
        out = out[:100] + "~" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
    return out


def canonical_topic_id(topic_id: str) -> str | None:
    parts = split_topic_id(topic_id)
    return "/".join(parts) if parts else None


def build_curriculum(sft: Sequence[SFTExample], preferences: Sequence[PreferencePair] = (),
                     quiz: Sequence[SFTExample] = (), *, source: str = SFT_FILE) -> Curriculum:
    """Group records into units -> chapters -> topics (order of first appearance).

    Raises :class:`DataValidationError` listing every SFT (or quiz) record without a valid
    ``unit/chapter/topic`` id.
    """
    issues: list[DataIssue] = []
    topics: dict[str, Topic] = {}
    for i, ex in enumerate(sft, start=1):
        line = ex.line or i
        if ex.topic_id is None:
            issues.append(DataIssue(line, "topic_id", "missing: every SFT record must name its topic as "
                                                      "'unit/chapter/topic' in topic_id or source"))
            continue
        tid = canonical_topic_id(ex.topic_id)
        if tid is None:
            issues.append(DataIssue(line, "topic_id", f"{topic_id_problem(ex.topic_id)}, got "
                                                      f"{short(ex.topic_id)}"))
            continue
        topics.setdefault(tid, Topic(tid, 0)).sft.append(ex)
    if issues:
        raise DataValidationError(source, issues)
    if not topics:
        raise DataValidationError(source, [DataIssue(0, "", "no SFT records")])

    quiz_issues: list[DataIssue] = []
    for i, ex in enumerate(quiz, start=1):
        tid = canonical_topic_id(ex.topic_id) if ex.topic_id else None
        if tid is None or tid not in topics:
            why = "missing" if ex.topic_id is None else f"{ex.topic_id!r} is not a topic of the SFT data" + \
                suggest(ex.topic_id, topics)
            quiz_issues.append(DataIssue(ex.line or i, "topic_id", f"quiz record: {why}"))
            continue
        topics[tid].quiz.append(ex)
    if quiz_issues:
        raise DataValidationError("quiz data", quiz_issues)

    # Units -> chapters -> topics in first-appearance order (dicts keep insertion order).
    units: dict[str, dict[str, list[Topic]]] = {}
    for tid, topic in topics.items():
        u, c, _ = tid.split("/")
        units.setdefault(u, {}).setdefault(c, []).append(topic)
    curriculum = Curriculum([Unit(u, [Chapter(u, c, ts) for c, ts in chapters.items()]) for u, chapters in units.items()])
    for index, topic in enumerate(curriculum.topics):
        topic.index = index

    by_prompt: dict[str, str] = {}
    for topic in curriculum.topics:
        for ex in topic.sft:
            by_prompt.setdefault(normalize_prompt(sft_prompt_text(ex)), topic.id)
    for pair in preferences:
        target: str | None = None
        if pair.topic_id is not None:
            tid = canonical_topic_id(pair.topic_id)
            if tid is None or tid not in topics:
                curriculum.unmatched_preferences.append(UnmatchedPair(
                    pair.line, pair.prompt_text, pair.topic_id,
                    f"topic_id {pair.topic_id!r} is not a topic of the SFT data{suggest(pair.topic_id, topics)}"))
                continue
            target = tid
        else:
            target = by_prompt.get(normalize_prompt(pair.prompt_text))
            if target is None:
                curriculum.unmatched_preferences.append(UnmatchedPair(
                    pair.line, pair.prompt_text, None, "no topic_id and the prompt matches no SFT prompt"))
                continue
        topics[target].preferences.append(pair)
    return curriculum


def load_curriculum(sft_data: RecordsInput | None = None, preference_data: RecordsInput | None = None,
                    data_dir: str | Path = "data", quiz_data: RecordsInput | None = None) -> Curriculum:
    """Read (or take) the records and group them; data errors are raised before any training."""
    sft = load_sft(sft_data, data_dir)
    prefs = load_preferences(preference_data, data_dir)
    quiz: list[SFTExample] = []
    if quiz_data is not None:
        if isinstance(quiz_data, (str, Path)):
            quiz = list(load_quiz_jsonl(_required_file(Path(quiz_data), "quiz data")))
        else:
            quiz = list(as_quiz_examples(list(quiz_data), "quiz data"))
    source = str(sft_data) if isinstance(sft_data, (str, Path)) else (
        str(Path(data_dir) / SFT_FILE) if sft_data is None else "sft_data")
    return build_curriculum(sft, prefs, quiz, source=source)
