"""How a command tells what it is doing (on stderr; results stay on stdout).

Four formats, chosen once per command by :func:`configure` (``--log-format``, ``--quiet``):

* ``rich`` — progress bars and spinners (loss, elapsed, ETA), the default when stderr is a terminal;
* ``plain`` — one timestamped line per event (``2026-12-02 00:15:03 SFT u1/c/alpha step 3/10 loss 2.3456 ...``),
  the default when stderr is not a terminal (a log file, CI); during a long phase or a long step a
  ``still ...`` heartbeat line at least every :data:`HEARTBEAT_SECONDS`;
* ``json`` — one JSON object per line (fields in ``docs/progress.md``), with the same heartbeat;
* quiet — nothing but errors (and the command's final summary, which goes to stdout).

The events come from three sources: the library's phases (:mod:`mindprint_interfaces.phases`: model load,
tokenisation, reference pass, each evaluation question, merges, saves), the training steps and curriculum
events that :class:`mindprint_trainer.progress.ProgressDisplay` receives, and the commands' notes.
"""

from __future__ import annotations

import json
import math
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import IO, Any, Literal

from rich.console import Console
from rich.errors import MarkupError
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from mindprint_interfaces import phases
from mindprint_interfaces.phases import Phase

Format = Literal["auto", "rich", "plain", "json"]
FORMATS: tuple[str, ...] = ("auto", "rich", "plain", "json")
HEARTBEAT_SECONDS = 30.0
PHASE_LINES_AFTER = 2.0  # plain: a phase is written once it ran this long (MINDPRINT_PHASE_LINES_AFTER)
SHOWN_METRICS = ("loss", "lr", "grad_norm", "rewards/margins", "rewards/accuracies")

TaskKey = tuple[str, str | None]


def phase_lines_after() -> float:
    """``MINDPRINT_PHASE_LINES_AFTER`` (seconds; 0 = a line for every phase), else :data:`PHASE_LINES_AFTER`."""
    raw = os.environ.get("MINDPRINT_PHASE_LINES_AFTER", "")
    try:
        return max(0.0, float(raw)) if raw else PHASE_LINES_AFTER
    except ValueError:
        return PHASE_LINES_AFTER


def plain_text(markup: str) -> str:
    """``[bold]x[/]`` -> ``x`` (the notes are written with rich markup)."""
    try:
        return Text.from_markup(markup).plain
    except MarkupError:  # text that only looks like markup (a path with [/brackets])
        return markup


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _fmt_metric(key: str, value: float) -> str:
    if key in ("lr", "learning_rate"):
        return f"{key} {value:.2e}"
    return f"{key} {value:.4f}"


def _task_label(stage: str, topic: str | None) -> str:
    return f"{stage.upper()} {topic}" if topic else stage.upper()


def _seconds(value: float) -> str:
    return f"{value:.0f} s" if value >= 10 else f"{value:.1f} s"


class Reporter:
    """Quiet: the base every format refines. Tracks what is in flight (phases, the training task), which the
    heartbeat reports on; the public methods are thread-safe (the heartbeat runs in its own thread)."""

    format = "quiet"

    def __init__(self, *, clock: Callable[[], float] = time.monotonic, heartbeat: float = HEARTBEAT_SECONDS) -> None:
        self.clock = clock
        self.heartbeat = heartbeat
        self.lock = threading.RLock()
        self.stack: list[Phase] = []
        self.starts: dict[int, float] = {}  # id(phase) -> clock() at its start
        self.task: TaskKey | None = None  # the training task in flight
        self.task_state: dict[TaskKey, tuple[int, int | None, float]] = {}  # step, total, clock() at start
        self.last_output = clock()
        self.holds = 0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    # -- what libraries and commands call ---------------------------------------------------------------------
    def on_phase_start(self, phase: Phase) -> None:
        with self.lock:
            self.stack.append(phase)
            self.starts[id(phase)] = self.clock()
            self._phase_start(phase)

    def on_phase_advance(self, phase: Phase) -> None:
        with self.lock:
            self._phase_advance(phase)

    def on_phase_end(self, phase: Phase, failed: bool) -> None:
        with self.lock:
            started = self.starts.pop(id(phase), self.clock())
            self._phase_end(phase, failed, self.clock() - started)
            if phase in self.stack:
                self.stack.remove(phase)

    def note(self, markup: str, *, level: str = "info") -> None:
        with self.lock:
            self._note(markup, level)

    def event(self, name: str, message: str, **fields: Any) -> None:
        """A curriculum event (``topic_start``, ``topic_end``, ``unit_end``): a note for people, an object for
        machines."""
        with self.lock:
            self._event(name, message, fields)

    def task_start(self, stage: str, topic: str | None, total: int | None) -> None:
        with self.lock:
            key = (stage, topic)
            self.task = key
            self.task_state[key] = (0, total, self.clock())
            self._task_start(key, total)

    def step(self, stage: str, topic: str | None, step: int, total: int | None, metrics: Mapping[str, Any]) -> None:
        with self.lock:
            key = (stage, topic)
            started = self.task_state.get(key, (0, total, self.clock()))[2]
            self.task = key
            self.task_state[key] = (step, total, started)
            self._step(key, step, total, metrics, self.clock() - started)

    def task_end(self, stage: str, topic: str | None) -> None:
        with self.lock:
            key = (stage, topic)
            if self.task == key:
                self.task = None
            self._task_end(key)

    def tick(self) -> None:
        """Write a heartbeat when nothing was written for :attr:`heartbeat` seconds while something is in flight."""
        with self.lock:
            now = self.clock()
            if now - self.last_output < self.heartbeat:
                return
            if self.stack:
                phase = self.stack[-1]
                self._heartbeat(self._label(), now - self.starts.get(id(phase), now), phase.done, phase.total)
            elif self.task is not None:
                step, total, started = self.task_state[self.task]
                self._heartbeat(f"{_task_label(*self.task)} training (step {step + 1})", now - started, step, total)

    # -- lifetime: a command holds the reporter while it works --------------------------------------------------
    def hold(self) -> None:
        with self.lock:
            self.holds += 1
            if self.holds == 1:
                self._start()

    def release(self) -> None:
        with self.lock:
            self.holds = max(0, self.holds - 1)
            if self.holds == 0:
                self._stop_display()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        with self.lock:
            self.holds = 0
            self._stop_display()

    def start_heartbeat(self, interval: float = 1.0) -> None:
        """A daemon thread calling :meth:`tick` every ``interval`` seconds (plain and json formats)."""
        if self._thread is not None:
            return

        def run() -> None:
            while not self._stop.wait(interval):
                self.tick()

        self._thread = threading.Thread(target=run, name="mindprint-heartbeat", daemon=True)
        self._thread.start()

    def _label(self) -> str:
        return " > ".join(p.label for p in self.stack)

    # -- per format -----------------------------------------------------------------------------------------
    def _phase_start(self, phase: Phase) -> None: ...
    def _phase_advance(self, phase: Phase) -> None: ...
    def _phase_end(self, phase: Phase, failed: bool, seconds: float) -> None: ...
    def _note(self, markup: str, level: str) -> None: ...
    def _event(self, name: str, message: str, fields: Mapping[str, Any]) -> None: ...
    def _task_start(self, key: TaskKey, total: int | None) -> None: ...
    def _step(self, key: TaskKey, step: int, total: int | None, metrics: Mapping[str, Any], seconds: float) -> None: ...
    def _task_end(self, key: TaskKey) -> None: ...
    def _heartbeat(self, label: str, seconds: float, done: int, total: int | None) -> None: ...
    def _start(self) -> None: ...
    def _stop_display(self) -> None: ...


class PlainReporter(Reporter):
    """Timestamped lines, for log files. A phase gets its lines once it has run for ``min_seconds`` (or counts
    something): a quick phase, or a command refused at once, leaves no noise."""

    format = "plain"

    def __init__(self, stream: IO[str] | None = None, *, now: Callable[[], datetime] | None = None,
                 min_seconds: float | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.stream = stream
        self.now = now or (lambda: datetime.now().astimezone())
        self.min_seconds = phase_lines_after() if min_seconds is None else min_seconds
        self.shown: set[int] = set()  # id() of the phases whose start line was written

    def _show_starts(self) -> None:
        """The start lines of the phases in flight not shown yet, outermost first."""
        for depth, phase in enumerate(self.stack):
            if id(phase) not in self.shown:
                self.shown.add(id(phase))
                total = f" ({phase.total})" if phase.total is not None else ""
                self.write(" > ".join(p.label for p in self.stack[:depth + 1]) + f"{total} ...")

    def tick(self) -> None:
        with self.lock:
            now = self.clock()
            if any(id(p) not in self.shown and now - self.starts.get(id(p), now) >= self.min_seconds
                   for p in self.stack):
                self._show_starts()
        super().tick()

    def write(self, message: str) -> None:
        stream = self.stream or sys.stderr
        stream.write(f"{self.now().strftime('%Y-%m-%d %H:%M:%S')} {message}\n")
        stream.flush()
        self.last_output = self.clock()

    def _phase_start(self, phase: Phase) -> None:
        if self.min_seconds <= 0:
            self._show_starts()

    def _phase_advance(self, phase: Phase) -> None:
        self._show_starts()
        of = f"/{phase.total}" if phase.total is not None else ""
        self.write(f"{self._label()}: {phase.done}{of}")

    def _phase_end(self, phase: Phase, failed: bool, seconds: float) -> None:
        if id(phase) not in self.shown and seconds < self.min_seconds:
            return
        self._show_starts()
        self.shown.discard(id(phase))
        self.write(f"{self._label()}: {'failed after' if failed else 'done in'} {_seconds(seconds)}")

    def _note(self, markup: str, level: str) -> None:
        self.write(plain_text(markup))

    def _event(self, name: str, message: str, fields: Mapping[str, Any]) -> None:
        self.write(plain_text(message))

    def _task_start(self, key: TaskKey, total: int | None) -> None:
        self.write(f"{_task_label(*key)} training" + (f" ({total} steps)" if total else "") + " ...")

    def _step(self, key: TaskKey, step: int, total: int | None, metrics: Mapping[str, Any], seconds: float) -> None:
        bits = [f"{_task_label(*key)} step {step}" + (f"/{total}" if total else "")]
        for name in SHOWN_METRICS:
            value = _number(metrics.get(name, metrics.get("learning_rate") if name == "lr" else None))
            if value is not None:
                bits.append(_fmt_metric(name, value))
        timing = f"elapsed {_seconds(seconds)}"
        if total and step > 0:
            timing += f", ETA {_seconds(seconds / step * max(0, total - step))}"
        self.write(" ".join(bits) + f" [{timing}]")

    def _heartbeat(self, label: str, seconds: float, done: int, total: int | None) -> None:
        count = f", {done}/{total}" if total is not None else ""
        self.write(f"still {label} ({_seconds(seconds)}{count})")


class JsonReporter(PlainReporter):
    """One JSON object per line: ``time`` (ISO 8601 with offset), ``event`` and the event's fields (every phase,
    however short)."""

    format = "json"

    def __init__(self, stream: IO[str] | None = None, **kwargs: Any) -> None:
        super().__init__(stream, **{**kwargs, "min_seconds": 0.0})

    def tick(self) -> None:
        Reporter.tick(self)

    def emit(self, event: str, **fields: Any) -> None:
        row = {"time": self.now().isoformat(timespec="milliseconds"), "event": event, **fields}
        stream = self.stream or sys.stderr
        stream.write(json.dumps(row, allow_nan=False, default=str) + "\n")
        stream.flush()
        self.last_output = self.clock()

    def _phase_fields(self, phase: Phase) -> dict[str, Any]:
        return {"phase": phase.name, "detail": phase.detail, "done": phase.done, "total": phase.total,
                "depth": self.stack.index(phase) if phase in self.stack else len(self.stack)}

    def _phase_start(self, phase: Phase) -> None:
        self.emit("phase_start", **self._phase_fields(phase))

    def _phase_advance(self, phase: Phase) -> None:
        self.emit("phase_progress", **self._phase_fields(phase))

    def _phase_end(self, phase: Phase, failed: bool, seconds: float) -> None:
        self.emit("phase_end", **self._phase_fields(phase), seconds=round(seconds, 3), failed=failed)

    def _note(self, markup: str, level: str) -> None:
        self.emit("note", level=level, message=plain_text(markup))

    def _event(self, name: str, message: str, fields: Mapping[str, Any]) -> None:
        self.emit(name, **fields, message=plain_text(message))

    def _task_start(self, key: TaskKey, total: int | None) -> None:
        self.emit("train_start", stage=key[0], topic=key[1], total=total)

    def _step(self, key: TaskKey, step: int, total: int | None, metrics: Mapping[str, Any], seconds: float) -> None:
        clean = {k: _number(v) for k, v in metrics.items() if not isinstance(v, (list, dict, str))}
        self.emit("step", stage=key[0], topic=key[1], step=step, total=total, seconds=round(seconds, 3),
                  metrics=clean)

    def _task_end(self, key: TaskKey) -> None:
        self.emit("train_end", stage=key[0], topic=key[1])

    def _heartbeat(self, label: str, seconds: float, done: int, total: int | None) -> None:
        self.emit("heartbeat", activity=label, seconds=round(seconds, 3), done=done, total=total)


class CountColumn(ProgressColumn):
    """``3/10`` when the task counts, nothing for a phase that cannot (rich's own column shows ``0/?``)."""

    def render(self, task: Task) -> Text:
        if task.total is None:
            return Text("")
        return Text(f"{int(task.completed)}/{int(task.total)}", style="progress.download")


class RichReporter(Reporter):
    """Progress bars and spinners on a terminal; finished training bars stay, phases leave a one-line note
    when they took longer than :data:`NOTE_AFTER` seconds."""

    format = "rich"
    NOTE_AFTER = 2.0

    def __init__(self, console: Console | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.console = console or Console(stderr=True)
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            CountColumn(),
            TextColumn("{task.fields[loss]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self.tasks: dict[TaskKey, TaskID] = {}
        self.phase_tasks: dict[int, TaskID] = {}
        self.live = False

    def _ensure_live(self) -> None:
        if not self.live:
            self.progress.start()
            self.live = True

    def _maybe_stop(self) -> None:
        if self.live and self.holds == 0 and not self.stack:
            self.progress.stop()  # the last render stays on screen; a later start must not draw these bars again
            self.live = False
            for task in list(self.progress.task_ids):
                self.progress.remove_task(task)
            self.tasks.clear()

    def _start(self) -> None:
        self._ensure_live()

    def _stop_display(self) -> None:
        self._maybe_stop()

    def _phase_start(self, phase: Phase) -> None:
        self._ensure_live()
        self.phase_tasks[id(phase)] = self.progress.add_task(self._label(), total=phase.total, loss="")

    def _phase_advance(self, phase: Phase) -> None:
        task = self.phase_tasks.get(id(phase))
        if task is not None:
            self.progress.update(task, completed=phase.done)

    def _phase_end(self, phase: Phase, failed: bool, seconds: float) -> None:
        task = self.phase_tasks.pop(id(phase), None)
        if task is not None:
            self.progress.remove_task(task)
        if failed or seconds >= self.NOTE_AFTER:
            mark = "[red]failed[/]" if failed else "[green]done[/]"
            self.progress.console.print(f"{plain_text(self._label())}: {mark} in {_seconds(seconds)}")
        if phase in self.stack:
            self.stack.remove(phase)
        self._maybe_stop()

    def _note(self, markup: str, level: str) -> None:
        self.progress.console.print(f"[yellow]{markup}[/]" if level == "warning" else markup)

    def _event(self, name: str, message: str, fields: Mapping[str, Any]) -> None:
        self.progress.console.print(message)

    def _task_start(self, key: TaskKey, total: int | None) -> None:
        self._ensure_live()
        if key in self.tasks:
            self.progress.reset(self.tasks[key], total=total, loss="")
            return
        self.tasks[key] = self.progress.add_task(_task_label(*key), total=total, loss="")

    def _step(self, key: TaskKey, step: int, total: int | None, metrics: Mapping[str, Any], seconds: float) -> None:
        if key not in self.tasks:
            self._task_start(key, total)
        loss = _number(metrics.get("loss", metrics.get("train_loss")))
        fields: dict[str, Any] = {"loss": f"loss {loss:6.3f}"} if loss is not None else {}
        self.progress.update(self.tasks[key], completed=step, total=total, **fields)

    def _task_end(self, key: TaskKey) -> None:
        task = self.tasks.get(key)
        if task is None:
            return
        current = next((t for t in self.progress.tasks if t.id == task), None)
        if current is not None and current.total is not None and current.completed > 0:
            self.progress.update(task, completed=current.total)
        self.progress.stop_task(task)


_current: Reporter | None = None


def make_reporter(fmt: str = "auto", *, quiet: bool = False, stream: IO[str] | None = None) -> Reporter:
    if quiet:
        return Reporter()
    if fmt == "auto":
        fmt = "rich" if (stream or sys.stderr).isatty() else "plain"
    if fmt == "json":
        return JsonReporter(stream)
    if fmt == "plain":
        return PlainReporter(stream)
    if fmt == "rich":
        return RichReporter(Console(file=stream) if stream is not None else None)
    raise ValueError(f"--log-format: expected one of {', '.join(FORMATS)}, got {fmt!r}")


def configure(fmt: str = "auto", *, quiet: bool = False, stream: IO[str] | None = None) -> Reporter:
    """Make the command's reporter (replacing the previous one) and let it hear the library's phases."""
    global _current
    shutdown()
    _current = make_reporter(fmt, quiet=quiet, stream=stream)
    phases.add_listener(_current)
    if isinstance(_current, PlainReporter):  # plain and json: a heartbeat during long phases and steps
        _current.start_heartbeat()
    return _current


def shutdown() -> None:
    """Stop hearing the library's phases and stop the heartbeat (the end of ``main()``: a command run
    in-process — tests, embedding — leaves no listener behind)."""
    global _current
    if _current is not None:
        phases.remove_listener(_current)
        _current.close()
        _current = None


def current() -> Reporter | None:
    """The configured reporter, or None before :func:`configure`."""
    return _current


def reporter() -> Reporter:
    """The command's reporter (configured on first use from the defaults: auto format, not quiet)."""
    return _current if _current is not None else configure()


class NoteConsole:
    """The ``print`` a command uses for its notes, routed to the reporter (so ``--quiet`` silences them and
    ``--log-format`` formats them)."""

    def print(self, markup: str = "", *, level: str | None = None) -> None:
        text = plain_text(markup)
        if level is None:
            level = "warning" if text.lower().startswith(("warning", "interrupted")) else "info"
        reporter().note(markup, level=level)
