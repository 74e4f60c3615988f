"""JSONL reading that reports every unreadable line (file, line number, reason) in one error."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import DataIssue, DataValidationError
from .records import PreferencePair, SFTExample
from .validate import parse_preference_records, parse_sft_records


def read_jsonl(path: str | Path, *, allow_empty: bool = False) -> list[tuple[int, Any]]:
    """Return ``(line_number, object)`` for every line; blank lines and bad JSON are errors."""
    p = Path(path)
    if not p.is_file():
        raise DataValidationError(str(p), [DataIssue(0, "", "file not found")])
    issues: list[DataIssue] = []
    rows: list[tuple[int, Any]] = []
    data = p.read_bytes()
    try:
        lines = data.decode("utf-8-sig").split("\n")  # a UTF-8 byte-order mark is fine
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise DataValidationError(str(p), [DataIssue(line, "", f"not UTF-8 text ({exc.reason}, byte "
                                                              f"0x{data[exc.start]:02x})")]) from None
    if lines and lines[-1] == "":
        lines.pop()  # trailing newline
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            issues.append(DataIssue(number, "", "blank line"))
            continue
        try:
            rows.append((number, json.loads(text, object_pairs_hook=_no_duplicates)))
        except json.JSONDecodeError as exc:
            issues.append(DataIssue(number, "", f"invalid JSON: {exc.msg} (column {exc.colno})"))
        except _DuplicateKey as exc:
            issues.append(DataIssue(number, str(exc)[:60], "key appears twice in one object (JSON would silently "
                                                          "keep the last)"))
    if issues:
        raise DataValidationError(str(p), issues)
    if not rows and not allow_empty:
        raise DataValidationError(str(p), [DataIssue(0, "", "file is empty")])
    return rows


class _DuplicateKey(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def load_sft_jsonl(path: str | Path) -> list[SFTExample]:
    """Read and validate an SFT file; all bad lines (JSON and schema) are reported together."""
    try:
        rows = read_jsonl(path)
    except DataValidationError as exc:
        # Also validate the readable lines so a user sees every problem at once.
        raise _merge(exc, path, parse_sft_records) from None
    return parse_sft_records(rows, str(path))


def load_preference_jsonl(path: str | Path) -> list[PreferencePair]:
    try:
        rows = read_jsonl(path)
    except DataValidationError as exc:
        raise _merge(exc, path, parse_preference_records) from None
    return parse_preference_records(rows, str(path))


def _merge(exc: DataValidationError, path: str | Path, parser: Any) -> DataValidationError:
    p = Path(path)
    if not p.is_file():
        return exc
    bad = {i.line for i in exc.issues}
    readable: list[tuple[int, Any]] = []
    for number, text in enumerate(p.read_text(encoding="utf-8", errors="replace").split("\n"), start=1):
        if number in bad or not text.strip():
            continue
        try:
            readable.append((number, json.loads(text)))
        except json.JSONDecodeError:
            continue
    issues = list(exc.issues)
    if readable:
        try:
            parser(readable, str(p))
        except DataValidationError as more:
            issues += [i for i in more.issues if i.line]
    issues.sort(key=lambda i: i.line)
    return DataValidationError(str(p), issues)


def write_jsonl(path: str | Path, records: list[dict[str, Any]]) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return p
