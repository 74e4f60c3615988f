"""Where a command's output goes: results on stdout, progress and notes on stderr, and the run directory
(opened with the config at the start, finished with plots and ``summary.md`` at the end)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console

from mindprint_interfaces.phases import phase

from .config import TrainerConfig
from .reporting import NoteConsole
from .rundir import CONFIG, CURRICULUM_PNG, RunDirectory, TopicRow, new_run_dir
from .trackers import RunTrackers

console = Console()
err_console = NoteConsole()  # notes go through the reporter (--quiet, --log-format)


def open_run(cfg: TrainerConfig, command: str) -> RunDirectory:
    run = RunDirectory(new_run_dir(cfg.output_dir, command), command)
    run.write_config(cfg.to_yaml())
    err_console.print(f"writing to {run.path}")  # said first, so nothing is written anywhere silently
    attach_trackers(run, cfg)
    return run


def attach_trackers(run: RunDirectory, cfg: TrainerConfig) -> None:
    """Start the ``report_to`` trackers for ``run`` (rank 0 only; the other ranks log nothing)."""
    from . import launch

    if not cfg.report_to or run.trackers is not None:
        return
    if launch.in_launched_process() and launch.launched_rank() > 0:
        return
    run.trackers = RunTrackers.open(cfg.report_to, cfg.tracking.logger_options(),
                                    run_name=cfg.tracking.run_name or run.path.name, config=cfg.to_plain(),
                                    run_dir=run.path)
    err_console.print(f"reporting to: {', '.join(run.trackers.names)}")


def finish_run(run: RunDirectory, title: str, *, topics: Sequence[TopicRow] = (), facts: Mapping[str, Any] | None = None,
               extra: str = "", success: bool | None = None) -> None:
    """Plots and ``summary.md``; the trackers get them (with the config and metrics.jsonl) and are finished —
    as failed when ``success`` is False (default: failed when the title says "(failed)" or "(interrupted)")."""
    with phase("write plots and summary", detail=str(run.path)):
        plots = run.write_plots()
        plots += [p for p in (run.path / CURRICULUM_PNG,) if p.is_file()]  # written by train / demo
        summary = run.write_summary(title=title, topics=topics, facts=facts, extra=extra)
    if run.trackers is not None:
        if success is None:
            success = "(failed)" not in title and "(interrupted)" not in title
        run.trackers.log_artifacts([run.path / CONFIG, run.metrics_path, *plots, summary])
        run.trackers.finish(success)
    err_console.print(f"run directory: [bold]{run.path}[/]")
