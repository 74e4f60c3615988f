"""Where a command's output goes: results on stdout, progress and notes on stderr, and the run directory
(opened with the config at the start, finished with plots and ``summary.md`` at the end)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console

from .config import TrainerConfig
from .rundir import RunDirectory, TopicRow, new_run_dir

console = Console()
err_console = Console(stderr=True)


def open_run(cfg: TrainerConfig, command: str) -> RunDirectory:
    run = RunDirectory(new_run_dir(cfg.output_dir, command), command)
    run.write_config(cfg.to_yaml())
    return run


def finish_run(run: RunDirectory, title: str, *, topics: Sequence[TopicRow] = (), facts: Mapping[str, Any] | None = None,
               extra: str = "") -> None:
    run.write_plots()
    run.write_summary(title=title, topics=topics, facts=facts, extra=extra)
    err_console.print(f"run directory: [bold]{run.path}[/]")
