"""Render the configuration reference (section, key, type, default, meaning) from the schema.

The README's table between ``<!-- config-table:start -->`` and ``<!-- config-table:end -->`` is
this script's output, so it cannot drift from the dataclasses in mindprint-interfaces; a test
compares the two. Imports the schema packages only, never the ``mindprint`` app.

Usage: ``uv run python tools/config_table.py`` (print) or ``--write README.md`` (replace the
section in place).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mindprint_interfaces import (
    BackendConfig,
    CPOConfig,
    CurriculumConfig,
    DPOConfig,
    GenerationConfig,
    KTOConfig,
    ORPOConfig,
    SFTConfig,
)
from mindprint_interfaces.config_base import FieldDoc, field_docs

START = "<!-- config-table:start -->"
END = "<!-- config-table:end -->"

# The config file's sections whose schema lives in mindprint-interfaces, under the file's names.
SECTIONS: tuple[tuple[str, type], ...] = (
    ("backend", BackendConfig),
    ("sft", SFTConfig),
    ("dpo", DPOConfig),
    ("generation", GenerationConfig),
    ("pipeline", CurriculumConfig),
    ("orpo", ORPOConfig),
    ("cpo", CPOConfig),
    ("kto", KTOConfig),
)

# The config file writes the backend's name as ``backend.type``.
FILE_KEYS: dict[tuple[str, str], str] = {("backend", "backend_type"): "type"}


def format_default(value: Any) -> str:
    """A default as the YAML file would write it."""
    if value is dataclasses.MISSING:
        return "required"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(format_default(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{}" if not value else str(value)
    return str(value)


def _row(section: str, doc: FieldDoc) -> str:
    key = FILE_KEYS.get((section, doc.name), doc.name)
    names = [n for n in (doc.name, *doc.aliases) if n != key]
    also = f" (also {', '.join(f'`{n}`' for n in names)})" if names else ""
    meaning = doc.doc + (f" (HF: `{doc.hf}`)" if doc.hf else "")
    cells = [f"`{section}`", f"`{key}`{also}", doc.type, f"`{format_default(doc.default)}`", meaning]
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def render() -> str:
    """The markdown table, one row per setting, sections in the config file's order."""
    lines = ["| section | key | type | default | meaning |", "|---|---|---|---|---|"]
    for section, cls in SECTIONS:
        lines.extend(_row(section, doc) for doc in field_docs(cls))
    return "\n".join(lines) + "\n"


def replace_section(text: str, table: str) -> str:
    """``text`` with the part between the markers replaced by ``table``."""
    start, end = text.index(START) + len(START), text.index(END)
    return text[:start] + "\n" + table + text[end:]


def current_section(text: str) -> str:
    start, end = text.index(START) + len(START), text.index(END)
    return text[start:end].lstrip("\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--write", type=Path, metavar="README", help="replace the marked section of this file")
    args = parser.parse_args(argv)
    table = render()
    if args.write is None:
        sys.stdout.write(table)
        return 0
    args.write.write_text(replace_section(args.write.read_text(encoding="utf-8"), table), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
