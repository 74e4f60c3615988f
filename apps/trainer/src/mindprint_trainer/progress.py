"""Training progress (loss + ETA) through the command's reporter, and every step appended to the run's
``metrics.jsonl``.

:class:`ProgressDisplay` is used two ways:

* as the source of per-trainer callbacks (``display.trainer_callback("sft", topic, total)``),
  which the backends' trainers call as ``on_step(step, metrics)``;
* as a pipeline callback (``on_topic_start`` / ``on_step(stage, topic_id, step, metrics)`` /
  ``on_topic_end`` / ``on_unit_end``) for ``mindprint train`` and ``mindprint demo``.

How it looks (rich bars, timestamped lines, JSON lines or nothing) is the reporter's
(:mod:`mindprint_trainer.reporting`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

from rich.console import Console

from .reporting import Reporter, RichReporter, reporter
from .rundir import RunDirectory

LOSS_KEYS = ("loss", "train_loss")


def _loss(metrics: Mapping[str, Any]) -> float | None:
    for key in LOSS_KEYS:
        value = metrics.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return None


class StepCallback:
    """A ``TrainerCallback`` bound to one stage/topic of a display."""

    def __init__(self, display: ProgressDisplay, stage: str, topic: str | None, total: int | None) -> None:
        self.display = display
        self.stage = stage
        self.topic = topic
        self.total = total
        self.started = False

    def on_step(self, step: int, metrics: Mapping[str, float]) -> None:
        if not self.started:
            self.display.start_task(self.stage, self.topic, self.total)
            self.started = True
        self.display.record_step(self.stage, self.topic, step, metrics)

    def on_save(self, path: Path) -> None:
        return None  # the command reports where the adapter ends up


def steps_for(n_records: int, batch: int, accum: int, epochs: float, max_steps: int) -> int:
    """The optimizer steps a stage will take, as a progress bar's total (``max_steps`` wins when set)."""
    if max_steps > 0:
        return max_steps
    per_epoch = max(1, math.ceil(n_records / batch) // max(1, accum))
    return max(1, math.ceil(per_epoch * epochs))


class ProgressDisplay:
    """The training tasks of one command, as (stage, topic) pairs, shown by the command's reporter."""

    def __init__(self, run: RunDirectory | None = None, *, console: Console | None = None,
                 reporter_: Reporter | None = None) -> None:
        self.run = run
        self.console = console
        # a console given (the 0.1 API): rich progress on it; else the command's reporter (--log-format, --quiet)
        self.reporter = reporter_ or (RichReporter(console) if console is not None else reporter())
        self.topic_started: dict[str, float] = {}
        self.attempts: dict[str, int] = {}  # the attempt each topic is on (metrics rows carry it)
        self.topic_results: dict[str, Any] = {}
        self.totals: dict[tuple[str, str | None], int] = {}
        self.started: set[tuple[str, str | None]] = set()
        self.steps_logged = 0
        self._held = False

    # -- lifecycle ----------------------------------------------------------------------------
    def __enter__(self) -> Self:
        self.reporter.hold()
        self._held = True
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop the live display (idempotent), e.g. before printing an interruption message."""
        if self._held:
            self._held = False
            self.reporter.release()

    def note(self, message: str) -> None:
        self.reporter.note(message)

    # -- tasks --------------------------------------------------------------------------------
    def start_task(self, stage: str, topic: str | None, total: int | None) -> None:
        key = (stage, topic)
        self.started.add(key)
        if total is not None:
            self.totals.setdefault(key, total)
        self.reporter.task_start(stage, topic, total)

    def record_step(self, stage: str, topic: str | None, step: int, metrics: Mapping[str, Any]) -> None:
        key = (stage, topic)
        if key not in self.started:
            self.start_task(stage, topic, self.totals.get(key))
        self.reporter.step(stage, topic, step, self.totals.get(key), metrics)
        if self.run is not None:
            self.run.log_step(stage, topic, step, metrics, attempt=self.attempts.get(topic) if topic else None)
        self.steps_logged += 1

    def finish_task(self, stage: str, topic: str | None) -> None:
        key = (stage, topic)
        if key in self.started:
            self.started.discard(key)
            self.reporter.task_end(stage, topic)

    def trainer_callback(self, stage: str, topic: str | None = None, total: int | None = None) -> StepCallback:
        if total is not None:
            self.totals[(stage, topic)] = total
        return StepCallback(self, stage, topic, total)

    # -- pipeline callback protocol (mindprint_pipeline.PipelineCallback) ------------------------
    def on_topic_start(self, topic_id: str, attempt: int = 0) -> None:
        self.topic_started[topic_id] = time.time()
        self.attempts[topic_id] = attempt
        retry = f" (retry {attempt})" if attempt else ""
        self.reporter.event("topic_start", f"[cyan]topic[/] {topic_id}{retry}", topic=topic_id, attempt=attempt)
        for stage in self._stages_of(topic_id):
            self.started.discard((stage, topic_id))

    def on_step(self, stage: str, topic_id: str, step: int, metrics: Mapping[str, Any]) -> None:
        self.record_step(stage, topic_id, step, metrics)

    def _stages_of(self, topic_id: str) -> list[str]:
        """The started stages of a topic, SFT first (the preference stage is named after its method)."""
        return sorted((s for s, t in self.started if t == topic_id), key=lambda s: (s != "sft", s))

    def on_topic_end(self, progress: Any) -> None:
        topic_id = str(getattr(progress, "topic_id", "?"))
        for stage in self._stages_of(topic_id):
            self.finish_task(stage, topic_id)
        status = str(getattr(progress, "status", ""))
        acc = getattr(progress, "accuracy", None)
        voice = getattr(progress, "voice", None)
        bits = [status]
        if isinstance(acc, (int, float)):
            bits.append(f"accuracy {acc:.2f}")
        if isinstance(voice, (int, float)):
            bits.append(f"voice {voice:.2f}")
        dpo = bool(getattr(progress, "dpo_applied", False))
        if dpo:
            bits.append("DPO applied")
        colour = "green" if status == "passed" else "yellow"
        self.reporter.event("topic_end", f"[{colour}]topic {topic_id}[/]: " + ", ".join(b for b in bits if b),
                            topic=topic_id, status=status,
                            accuracy=float(acc) if isinstance(acc, (int, float)) else None,
                            voice=float(voice) if isinstance(voice, (int, float)) else None, dpo_applied=dpo)
        self.topic_results[topic_id] = progress

    def on_unit_end(self, progress: Any) -> None:
        unit = getattr(progress, "unit", "?")
        merged = getattr(progress, "merged_model_path", None)
        self.reporter.event("unit_end", f"[cyan]unit[/] {unit} done" +
                            (f"; merged (verified) into {merged}" if merged else ""),
                            unit=str(unit), merged_model_path=merged)
