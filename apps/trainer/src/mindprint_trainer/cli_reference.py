"""The command reference ``docs/cli.md``, rendered from the argparse parser itself (so it cannot drift).

``uv run python -m mindprint_trainer.cli_reference`` prints it; ``--write docs/cli.md`` replaces the file.
``tests/trainer/test_cli_reference.py`` fails when the file is not current.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

WIDTH = "110"  # argparse wraps to $COLUMNS: fixed, so the output is the same on every terminal

HEADER = """\
# mindprint command reference

Generated from the parser (`uv run python -m mindprint_trainer.cli_reference --write docs/cli.md`); a test
keeps it current. Exit codes: 0 ok, 1 the work failed (training, merge verification, disk full), 2 something the
user fixes (usage, config, data, model directory, missing package), 130 interrupted (Ctrl-C or SIGTERM; the
run saves what it has). Every failure is one `error: ...` line; `--debug` shows the traceback.

Run directories: each training or evaluation command writes into a new `runs/<YYYYmmdd-HHMMSS>-<command>/`
(`-o/--output-dir` chooses the parent) and says so before it starts. `--threads N` sizes torch's and the
BLAS/OpenMP thread pools (MLX's BLAS included); the default is one thread per physical core this process may
use (its CPU affinity, capped by a cgroup CPU quota), unless `OMP_NUM_THREADS` is already set.
"""


def render() -> str:
    from .cli import build_parser_and_commands

    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = WIDTH
    try:
        parser, commands = build_parser_and_commands()
        parts = [HEADER, "## mindprint", "", "```text", parser.format_help().rstrip(), "```", ""]
        for name, sub in commands.items():
            help_text = sub.description or ""
            parts += [f"## mindprint {name}", "", help_text + ("." if help_text and help_text[-1] not in ".)" else ""),
                      "", "```text", sub.format_help().rstrip(), "```", ""]
    finally:
        if previous is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = previous
    return "\n".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mindprint_trainer.cli_reference")
    p.add_argument("--write", metavar="FILE", help="write the reference to FILE (default: print it)")
    args = p.parse_args(argv)
    text = render()
    if args.write:
        Path(args.write).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
