"""The line a run prints (and ``summary.md`` keeps) when records were longer than ``max_length``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def truncation_note(metrics: Mapping[str, Any], max_length: int, source: str) -> str | None:
    """``"<source>: 3 records longer than max_length=64 were truncated; longest: <source>:7, 100000 characters"``,
    or None when nothing was cut or dropped.

    The longest record is named where the user can find it: ``file:line`` for a JSONL file (every line is one
    record — blank lines are refused), ``row N`` (0-based, as the datasets library counts) for any other source."""
    truncated = int(metrics.get("truncated", 0) or 0)
    dropped = int(metrics.get("dropped", 0) or 0)
    if not truncated and not dropped:
        return None
    parts = []
    if truncated:
        parts.append(f"{truncated} record{'s' if truncated != 1 else ''} longer than max_length={max_length} "
                     "were truncated")
    if dropped:
        parts.append(f"{dropped} dropped (over-long with truncation=drop, or nothing left to train on)")
    longest = metrics.get("truncated_longest_line")
    if longest:
        where = f"{source}:{longest}" if source.endswith(".jsonl") else f"row {int(longest) - 1}"
        parts.append(f"longest: {where}, {metrics.get('truncated_longest_chars')} characters")
    return f"{source}: " + "; ".join(parts)
