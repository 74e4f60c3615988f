"""Rich progress bars (loss + ETA) that also append every step to the run's ``metrics.jsonl``.

:class:`ProgressDisplay` is used two ways:

* as the source of per-trainer callbacks (``display.trainer_callback("sft", topic, total)``),
  which the backends' trainers call as ``on_step(step, metrics)``;
* as a pipeline callback (``on_topic_start`` / ``on_step(stage, topic_id, step, metrics)`` /
  ``on_topic_end`` / ``on_unit_end``) for ``mindprint train`` and ``mindprint demo``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

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
    """One rich ``Progress`` for the whole command; tasks are (stage, topic) pairs."""

    def __init__(self, run: RunDirectory | None = None, *, console: Console | None = None) -> None:
        self.run = run
        self.console = console or Console(stderr=True)
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self.tasks: dict[tuple[str, str | None], TaskID] = {}
        self.topic_started: dict[str, float] = {}
        self.topic_results: dict[str, Any] = {}
        self.totals: dict[tuple[str, str | None], int] = {}
        self.steps_logged = 0

    # -- lifecycle ----------------------------------------------------------------------------
    def __enter__(self) -> Self:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def note(self, message: str) -> None:
        self.progress.console.print(message)

    # -- tasks --------------------------------------------------------------------------------
    def start_task(self, stage: str, topic: str | None, total: int | None) -> TaskID:
        key = (stage, topic)
        if key in self.tasks:
            task = self.tasks[key]
            self.progress.reset(task, total=total)
            return task
        label = f"{stage.upper():4} {topic}" if topic else stage.upper()
        task = self.progress.add_task(label, total=total, loss="  -   ")
        self.tasks[key] = task
        return task

    def record_step(self, stage: str, topic: str | None, step: int, metrics: Mapping[str, Any]) -> None:
        key = (stage, topic)
        task = self.tasks.get(key)
        if task is None:
            task = self.start_task(stage, topic, None)
        loss = _loss(metrics)
        fields: dict[str, Any] = {}
        if loss is not None:
            fields["loss"] = f"{loss:6.3f}"
        self.progress.update(task, completed=step, **fields)
        if self.run is not None:
            self.run.log_step(stage, topic, step, metrics)
        self.steps_logged += 1

    def finish_task(self, stage: str, topic: str | None) -> None:
        task = self.tasks.get((stage, topic))
        if task is not None:
            current = next((t for t in self.progress.tasks if t.id == task), None)
            if current is not None and current.total is not None and current.completed > 0:
                self.progress.update(task, completed=current.total)
            self.progress.stop_task(task)

    def trainer_callback(self, stage: str, topic: str | None = None, total: int | None = None) -> StepCallback:
        return StepCallback(self, stage, topic, total)

    # -- pipeline callback protocol (mindprint_pipeline.PipelineCallback) ------------------------
    def on_topic_start(self, topic_id: str, attempt: int = 0) -> None:
        self.topic_started[topic_id] = time.time()
        retry = f" (retry {attempt})" if attempt else ""
        self.note(f"[cyan]topic[/] {topic_id}{retry}")
        for stage in ("sft", "dpo"):
            if (stage, topic_id) in self.tasks:
                self.progress.reset(self.tasks[(stage, topic_id)], total=self.totals.get((stage, topic_id)))
        self.start_task("sft", topic_id, self.totals.get(("sft", topic_id)))

    def on_step(self, stage: str, topic_id: str, step: int, metrics: Mapping[str, Any]) -> None:
        if (stage, topic_id) not in self.tasks:
            self.start_task(stage, topic_id, self.totals.get((stage, topic_id)))
        self.record_step(stage, topic_id, step, metrics)

    def on_topic_end(self, progress: Any) -> None:
        topic_id = str(getattr(progress, "topic_id", "?"))
        for stage in ("sft", "dpo"):
            self.finish_task(stage, topic_id)
        status = str(getattr(progress, "status", ""))
        acc = getattr(progress, "accuracy", None)
        voice = getattr(progress, "voice", None)
        bits = [status]
        if isinstance(acc, (int, float)):
            bits.append(f"accuracy {acc:.2f}")
        if isinstance(voice, (int, float)):
            bits.append(f"voice {voice:.2f}")
        if getattr(progress, "dpo_applied", False):
            bits.append("DPO applied")
        colour = "green" if status == "passed" else "yellow"
        self.note(f"[{colour}]topic {topic_id}[/]: " + ", ".join(b for b in bits if b))
        self.topic_results[topic_id] = progress

    def on_unit_end(self, progress: Any) -> None:
        unit = getattr(progress, "unit", "?")
        merged = getattr(progress, "merged_model_path", None)
        self.note(f"[cyan]unit[/] {unit} done" + (f"; merged (verified) into {merged}" if merged else ""))
