"""mindprint training benchmarks (GitHub issue #9): each backend against the library a user would
otherwise use, in one run, on the SmolLM2 fixture. Entry point: :func:`main` (``mindprint bench``).
See ``tools/bench/cli.py`` for usage and ``benchmarks/RESULTS.md`` for the latest figures.
"""

from __future__ import annotations

from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark with command-line style arguments; returns the process exit code."""
    from .cli import main as _main

    return _main(argv)


__all__ = ["main"]
