"""Experiment trackers: one protocol every metrics logger implements, and a registry name -> lazy implementation.

A run tells its loggers four things, in this order::

    logger.start(run_name, config, run_dir)     # once: the resolved config (nested plain dict)
    logger.log_metrics({key: value}, step)      # per training step
    logger.log_artifact(path)                   # files the run wrote (plots, summary, config)
    logger.finish(success)                      # once

Metric names are built by :func:`metric_key` (``<stage>/<metric>``, or ``<stage>/<topic>/<metric>`` in the
curriculum, so every topic is its own series); the step is the stage's (the topic's) own optimizer step.
Every logger gets exactly the same keys and steps, which are the rows of the run's ``metrics.jsonl``.

Implementations are registered by name with the ``module:attr`` of a class (imported only when the
name is asked for) and the install hint shown when its library is missing::

    register_metrics_logger(LoggerSpec("tensorboard", "mindprint_trainer.trackers.tensorboard_logger:"
                                       "TensorBoardLogger", "tensorboardX", "mindprint-trainer[tensorboard]"))

Third-party loggers may also register through the ``mindprint.metric_loggers`` entry-point group
(the entry point names a :class:`LoggerSpec` or a class).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import import_module, metadata
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from .errors import ConfigError, MindprintError
from .validation import suggest

ENTRY_POINT_GROUP = "mindprint.metric_loggers"

__all__ = ["ENTRY_POINT_GROUP", "LoggerSpec", "LoggerUnavailableError", "MetricsLogger", "load_metrics_logger",
           "metric_key", "metrics_logger_names", "register_metrics_logger"]


@runtime_checkable
class MetricsLogger(Protocol):
    """One experiment tracker. Implementations take their own options as keyword arguments."""

    def start(self, run_name: str, config: Mapping[str, Any], run_dir: Path) -> None: ...

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None: ...

    def log_artifact(self, path: Path) -> None: ...

    def finish(self, success: bool = True) -> None: ...


class LoggerUnavailableError(MindprintError, ImportError):
    """A logger was asked for whose library is not installed; the message says what to install."""

    usage = True  # the CLI exits 2: the user fixes it by installing the extra


@dataclass(frozen=True)
class LoggerSpec:
    """A registered logger: its ``module:attr`` (imported lazily) and what to install when it does not import."""

    name: str
    target: str
    requires: str  # the library the logger needs, as the error names it
    install: str  # what to pip install (a distribution or ``dist[extra]``)
    description: str = ""

    def load(self) -> type[MetricsLogger]:
        module_name, _, attr = self.target.partition(":")
        try:
            module = import_module(module_name)
        except ImportError as exc:
            missing = exc.name or str(exc)
            raise LoggerUnavailableError(
                f"report_to: {self.name} needs {self.requires} ({missing} not installed): "
                f"pip install '{self.install}'") from exc
        obj = getattr(module, attr)
        if not isinstance(obj, type):
            raise TypeError(f"{self.target} is not a class")
        return obj


_REGISTRY: dict[str, LoggerSpec] = {}


def register_metrics_logger(spec: LoggerSpec) -> None:
    _REGISTRY[spec.name.strip().lower()] = spec


def _entry_points() -> dict[str, LoggerSpec]:
    found: dict[str, LoggerSpec] = {}
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        found[ep.name.lower()] = LoggerSpec(ep.name.lower(), ep.value, ep.value.partition(":")[0],
                                            ep.dist.name if ep.dist is not None else ep.value)
    return found


def _all() -> dict[str, LoggerSpec]:
    return {**_entry_points(), **_REGISTRY}  # explicit registrations win


def metrics_logger_names() -> list[str]:
    return sorted(_all())


def load_metrics_logger(name: str) -> type[MetricsLogger]:
    """The logger class registered as ``name``; ``ConfigError`` for an unknown name, ``LoggerUnavailableError``
    (naming the extra to install) when its library is missing."""
    specs = _all()
    key = name.strip().lower()
    spec = specs.get(key)
    if spec is None:
        known = ", ".join(sorted(specs)) or "none"
        raise ConfigError(f"report_to: unknown metrics logger {name!r}{suggest(key, specs)} (known: {known})",
                          key="report_to")
    return spec.load()


_UNSAFE = re.compile(r"[^A-Za-z0-9_\-./ ]")


def metric_key(stage: str, topic: str | None, name: str) -> str:
    """The tracker key of one metric: ``sft/loss``, or ``sft/u1/c/alpha/loss`` for a curriculum topic.

    Characters outside ``[A-Za-z0-9_-./ ]`` (the set every tracker accepts) become ``_``.
    """
    parts = [stage, topic, name] if topic else [stage, name]
    return _UNSAFE.sub("_", "/".join(parts))
