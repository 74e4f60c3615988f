"""Experiment trackers for a run: ``report_to: [tensorboard, mlflow, wandb]`` (or ``--report-to``).

The protocol and the registry are :mod:`mindprint_interfaces.metric_loggers`; this package registers the
three built-in loggers (each in its own module, importing its library only when asked for) and
:class:`RunTrackers`, which the run directory feeds with every row it appends to ``metrics.jsonl`` —
so each tracker sees exactly the rows of that file, on either backend and in the curriculum.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mindprint_interfaces import MindprintError
from mindprint_interfaces.metric_loggers import (
    LoggerSpec,
    MetricsLogger,
    load_metrics_logger,
    metric_key,
    metrics_logger_names,
    register_metrics_logger,
)

__all__ = ["BUILTIN", "ROW_KEYS", "RunTrackers", "TrackerError", "known_trackers", "row_metrics"]


class TrackerError(MindprintError, RuntimeError):
    """A tracker named in ``report_to`` could not start its run (exit 1, before any training)."""

BUILTIN = (
    LoggerSpec("tensorboard", "mindprint_trainer.trackers.tensorboard_logger:TensorBoardLogger", "tensorboardX",
               "mindprint-trainer[tensorboard]", "TensorBoard event files in <run>/tensorboard"),
    LoggerSpec("mlflow", "mindprint_trainer.trackers.mlflow_logger:MLflowLogger", "mlflow",
               "mindprint-trainer[mlflow]", "an MLflow run (tracking.mlflow_tracking_uri or MLFLOW_TRACKING_URI)"),
    LoggerSpec("wandb", "mindprint_trainer.trackers.wandb_logger:WandbLogger", "wandb",
               "mindprint-trainer[wandb]", "a Weights & Biases run (online, or offline: tracking.wandb_mode)"),
)
for _spec in BUILTIN:
    register_metrics_logger(_spec)

def known_trackers() -> list[str]:
    """The names ``report_to`` accepts: the built-in loggers and any registered through entry points."""
    return metrics_logger_names()


# The columns of a metrics.jsonl row that locate it rather than measure something.
ROW_KEYS = ("stage", "topic", "attempt", "step", "timestamp")


def row_metrics(row: Mapping[str, Any]) -> tuple[dict[str, float], int]:
    """A ``metrics.jsonl`` row as tracker keys and its step (non-numeric and non-finite values are left out)."""
    stage, topic = str(row["stage"]), row.get("topic")
    metrics: dict[str, float] = {}
    for key, value in row.items():
        if key in ROW_KEYS or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if math.isfinite(value):
            metrics[metric_key(stage, str(topic) if topic else None, key)] = float(value)
    return metrics, int(row["step"])


class RunTrackers:
    """The loggers of one run, started together and fed the same rows."""

    def __init__(self, loggers: Sequence[tuple[str, MetricsLogger]]) -> None:
        self.loggers = list(loggers)
        self.finished = False

    @classmethod
    def open(cls, names: Iterable[str], options: Mapping[str, Mapping[str, Any]], *, run_name: str,
             config: Mapping[str, Any], run_dir: Path) -> RunTrackers:
        """Create and start the named loggers (every name is checked, and every library imported, first)."""
        classes = [(name, load_metrics_logger(name)) for name in dict.fromkeys(n.strip().lower() for n in names)]
        loggers: list[tuple[str, MetricsLogger]] = []
        for name, cls_ in classes:
            logger = cls_(**dict(options.get(name, {})))
            try:
                logger.start(run_name, config, run_dir)
            except Exception as exc:  # e.g. an unreachable tracking server: stop before any training
                cls(loggers).finish(success=False)
                raise TrackerError(f"report_to: {name} could not start a run: {type(exc).__name__}: {exc}") from exc
            loggers.append((name, logger))
        return cls(loggers)

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.loggers]

    def log_row(self, row: Mapping[str, Any]) -> None:
        metrics, step = row_metrics(row)
        if metrics:
            for _, logger in self.loggers:
                logger.log_metrics(metrics, step)

    def log_artifacts(self, paths: Iterable[Path]) -> None:
        files = [p for p in paths if p.is_file()]
        for _, logger in self.loggers:
            for path in files:
                logger.log_artifact(path)

    def finish(self, success: bool = True) -> None:
        if self.finished:
            return
        self.finished = True
        for _, logger in self.loggers:
            logger.finish(success)
