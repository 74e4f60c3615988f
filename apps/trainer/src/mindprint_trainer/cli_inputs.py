"""Small input rules of the command line: ``generate -`` reads stdin, ``merge`` never overwrites silently,
``train --resume`` checks the kind of run it is given."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import TextIO

from mindprint_interfaces import ConfigError


def prompt_text(parts: list[str], stdin: TextIO | None = None) -> str:
    """The prompt of ``generate``: its words joined, or the whole of stdin for a single ``-``."""
    if parts != ["-"]:
        return " ".join(parts)
    text = (stdin or sys.stdin).read()
    if not text.strip():
        raise ConfigError("prompt: '-' reads the prompt from stdin, but stdin was empty", key="prompt")
    return text.rstrip("\n")


def check_merge_target(target: str | Path, *, force: bool) -> Path:
    """``merge OUT_DIR``: refuse a file, and an existing non-empty directory unless ``--force``."""
    out = Path(target)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"merge: {out} is a file, not a directory", key="output")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ConfigError(f"merge: {out} exists and is not empty; pass --force to replace it, or choose another "
                          "directory", key="output")
    return out


# Run directories are named <YYYYmmdd>-<HHMMSS>-<command>[-<n>] (rundir.new_run_dir).
_RUN_NAME = re.compile(r"^\d{8}-\d{6}-(?P<command>[a-z][a-z-]*?)(?:-\d+)?$")


def run_kind(run_dir: Path) -> str | None:
    """The command that created ``run_dir`` (``train``, ``sft``, ``dpo`` ...), from its name or its summary title."""
    match = _RUN_NAME.match(run_dir.name)
    if match:
        return match.group("command")
    summary = run_dir / "summary.md"
    if summary.is_file():
        first = summary.read_text(encoding="utf-8", errors="replace").splitlines()[:1]
        title = re.match(r"^# mindprint (?P<command>[a-z-]+)", first[0]) if first else None
        if title:
            return title.group("command")
    return None


def check_resume_kind(run_dir: Path, command: str) -> None:
    """``<command> --resume RUN_DIR`` on a run another command made says which command made it."""
    kind = run_kind(run_dir)
    if kind is not None and kind != command:
        raise ConfigError(f"--resume: {run_dir} is a `mindprint {kind}` run, not a `mindprint {command}` run; "
                          f"`mindprint {command} --resume` continues only runs of `mindprint {command}`", key="resume")
