"""Turning raw JSON objects into :mod:`records`, collecting *every* problem before raising.

Accepted SFT shapes: ``{instruction|question|prompt, output|answer|completion}``,
``{messages: [{role, content}, ...]}`` or TRL's ``{prompt: messages, completion: messages}``; preference
shape: ``{prompt: str | messages, chosen, rejected}`` where chosen/rejected are strings or (TRL's
conversational form) a list with one assistant message.
Optional ``source`` / ``topic_id`` (``unit/chapter/topic``) travel with the record.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..errors import DataIssue, DataValidationError
from ..messages import Message
from .records import PreferencePair, SFTExample

PROMPT_KEYS = ("instruction", "question", "prompt")
ANSWER_KEYS = ("output", "answer", "completion")
ROLES = ("system", "user", "assistant")
OPTIONAL_KEYS = ("source", "topic_id", "id", "metadata", "input", "system")


class _Issues:
    def __init__(self) -> None:
        self.items: list[DataIssue] = []

    def add(self, line: int, field: str, reason: str) -> None:
        self.items.append(DataIssue(line, field, reason))


def _topic(record: Mapping[str, Any], line: int, issues: _Issues) -> str | None:
    for key in ("topic_id", "source"):
        value = record.get(key)
        if value is None:
            continue
        if not isinstance(value, str) or not value.strip():
            issues.add(line, key, f"must be a non-empty string like 'unit/chapter/topic', got {value!r}")
            return None
        return value.strip()
    return None


def _string(record: Mapping[str, Any], key: str, line: int, issues: _Issues) -> str | None:
    value = record.get(key)
    if not isinstance(value, str):
        issues.add(line, key, f"must be a string, got {type(value).__name__}")
        return None
    if not value.strip():
        issues.add(line, key, "is empty")
        return None
    return value


def _messages(value: Any, field: str, line: int, issues: _Issues, *, need_assistant: bool) -> tuple[Message, ...] | None:
    if not isinstance(value, list) or not value:
        issues.add(line, field, "must be a non-empty list of {role, content} objects")
        return None
    out: list[Message] = []
    ok = True
    for i, msg in enumerate(value):
        where = f"{field}[{i}]"
        if not isinstance(msg, Mapping):
            issues.add(line, where, f"must be an object with role and content, got {type(msg).__name__}")
            ok = False
            continue
        role, content = msg.get("role"), msg.get("content")
        if role not in ROLES:
            issues.add(line, f"{where}.role", f"must be one of {', '.join(ROLES)}, got {role!r}")
            ok = False
        if not isinstance(content, str):
            issues.add(line, f"{where}.content", f"must be a string, got {type(content).__name__}")
            ok = False
        if ok:
            out.append(Message(role=str(role), content=str(content)))
    if not ok:
        return None
    if need_assistant:
        if not any(m["role"] == "assistant" for m in out):
            issues.add(line, field, "has no assistant message to train on")
            return None
        if not any(m["content"].strip() for m in out if m["role"] == "assistant"):
            issues.add(line, field, "assistant messages are all empty")
            return None
    return tuple(out)


def _sft_record(record: Any, line: int, issues: _Issues) -> SFTExample | None:
    if not isinstance(record, Mapping):
        issues.add(line, "", f"must be a JSON object, got {type(record).__name__}")
        return None
    topic = _topic(record, line, issues)
    if "messages" in record:
        messages = _messages(record["messages"], "messages", line, issues, need_assistant=True)
        return SFTExample(messages, topic, line) if messages is not None else None
    if isinstance(record.get("prompt"), list) and isinstance(record.get("completion"), list):
        # TRL's conversational prompt-completion: both message lists, the completion the assistant's turn(s).
        asked = _messages(record["prompt"], "prompt", line, issues, need_assistant=False)
        completion = _messages(record["completion"], "completion", line, issues, need_assistant=True)
        if asked is None or completion is None:
            return None
        return SFTExample(asked + completion, topic, line)
    prompt_key = next((k for k in PROMPT_KEYS if k in record), None)
    answer_key = next((k for k in ANSWER_KEYS if k in record), None)
    if prompt_key is None and answer_key is None:
        keys = ", ".join(sorted(map(str, record))) or "none"
        issues.add(line, "", "unknown record shape: expected instruction/output, question/answer, prompt/completion "
                             f"or messages (keys found: {keys})")
        return None
    if prompt_key is None:
        issues.add(line, "/".join(PROMPT_KEYS), f"missing (the record has {answer_key!r} but no prompt field)")
        return None
    if answer_key is None:
        issues.add(line, "/".join(ANSWER_KEYS), f"missing (the record has {prompt_key!r} but no answer field)")
        return None
    prompt = _string(record, prompt_key, line, issues)
    answer = _string(record, answer_key, line, issues)
    extra_input = record.get("input")
    if extra_input is not None and not isinstance(extra_input, str):
        issues.add(line, "input", f"must be a string, got {type(extra_input).__name__}")
        return None
    system = record.get("system")
    if system is not None and not isinstance(system, str):
        issues.add(line, "system", f"must be a string, got {type(system).__name__}")
        return None
    if prompt is None or answer is None:
        return None
    user = f"{prompt}\n\n{extra_input}" if extra_input else prompt
    turns: list[Message] = []
    if system:
        turns.append(Message(role="system", content=system))
    turns += [Message(role="user", content=user), Message(role="assistant", content=answer)]
    return SFTExample(tuple(turns), topic, line)


def _completion(record: Mapping[str, Any], key: str, line: int, issues: _Issues) -> str | None:
    """A preference completion: a string, or (TRL's conversational form) a list holding one assistant message."""
    value = record.get(key)
    if not isinstance(value, list):
        return _string(record, key, line, issues)
    messages = _messages(value, key, line, issues, need_assistant=True)
    if messages is None:
        return None
    if len(messages) != 1 or messages[0]["role"] != "assistant":
        issues.add(line, key, f"must be one assistant message (got roles {', '.join(m['role'] for m in messages)}); "
                              "multi-turn completions are not supported")
        return None
    return messages[0]["content"]


def has_fields(record: Any, fields: tuple[str, ...], kind: str, line: int, issues: _Issues) -> bool:
    """``record`` is a JSON object with every one of ``fields``; else each problem is reported (file:line:field)."""
    if not isinstance(record, Mapping):
        issues.add(line, "", f"must be a JSON object, got {type(record).__name__}")
        return False
    missing = [k for k in fields if k not in record]
    if missing:
        keys = ", ".join(sorted(map(str, record))) or "none"
        for key in missing:
            issues.add(line, key, f"missing ({kind} record needs {', '.join(fields)}; keys found: {keys})")
        return False
    return True


def prompt_messages(record: Mapping[str, Any], line: int, issues: _Issues) -> tuple[Message, ...] | None:
    """The ``prompt`` field as messages: a list of messages as given, a string as one user turn."""
    raw_prompt = record["prompt"]
    if isinstance(raw_prompt, list):
        return _messages(raw_prompt, "prompt", line, issues, need_assistant=False)
    text = _string(record, "prompt", line, issues)
    return (Message(role="user", content=text),) if text is not None else None


def _preference_record(record: Any, line: int, issues: _Issues) -> PreferencePair | None:
    if not has_fields(record, ("prompt", "chosen", "rejected"), "a preference", line, issues):
        return None
    topic = _topic(record, line, issues)
    prompt = prompt_messages(record, line, issues)
    chosen = _completion(record, "chosen", line, issues)
    rejected = _completion(record, "rejected", line, issues)
    if prompt is None or chosen is None or rejected is None:
        return None
    if chosen == rejected:
        issues.add(line, "rejected", "is identical to chosen (the pair carries no preference)")
        return None
    return PreferencePair(prompt, chosen, rejected, topic, line)


def _numbered(records: Iterable[Any]) -> Iterable[tuple[int, Any]]:
    for i, item in enumerate(records, start=1):
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], int):
            yield item[0], item[1]
        else:
            yield i, item


def parse_sft_records(records: Iterable[Any], source: str = "<records>") -> list[SFTExample]:
    """Validate SFT records (dicts, or ``(line, dict)`` pairs from :func:`read_jsonl`)."""
    issues = _Issues()
    out = [ex for line, rec in _numbered(records) if (ex := _sft_record(rec, line, issues)) is not None]
    if issues.items:
        raise DataValidationError(source, issues.items)
    if not out:
        raise DataValidationError(source, [DataIssue(0, "", "no records (the data is empty)")])
    return out


def parse_preference_records(records: Iterable[Any], source: str = "<records>") -> list[PreferencePair]:
    """Validate preference records (dicts, or ``(line, dict)`` pairs from :func:`read_jsonl`)."""
    issues = _Issues()
    out = [p for line, rec in _numbered(records) if (p := _preference_record(rec, line, issues)) is not None]
    if issues.items:
        raise DataValidationError(source, issues.items)
    if not out:
        raise DataValidationError(source, [DataIssue(0, "", "no records (the data is empty)")])
    return out


def as_sft_examples(data: Sequence[Any], source: str = "<records>") -> list[SFTExample]:
    """Accept already-parsed examples or raw dicts."""
    if data and all(isinstance(d, SFTExample) for d in data):
        return list(data)
    return parse_sft_records(data, source)


def as_preference_pairs(data: Sequence[Any], source: str = "<records>") -> list[PreferencePair]:
    if data and all(isinstance(d, PreferencePair) for d in data):
        return list(data)
    return parse_preference_records(data, source)
