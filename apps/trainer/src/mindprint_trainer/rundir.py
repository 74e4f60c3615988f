"""The run directory every command writes.

::

    runs/<timestamp>-<command>/
      config.yaml       the resolved configuration (after every override)
      metrics.jsonl     one JSON line per training step: stage, topic, step, loss, lr, grad_norm,
                        rewards/* and the preference method's own metrics, timestamp
      loss.png          training loss per stage/topic (matplotlib, Agg)
      rewards.png       preference rewards / accuracies and the method's metrics (when a preference stage ran)
      curriculum.png    accuracy and voice per topic, before vs after (train, demo)
      adapters/         trained adapters (PEFT layout)
      checkpoints/      the pipeline's resumable progress
      summary.md        topics, status, scores, attempts, times
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from mindprint_interfaces import ConfigError
from mindprint_interfaces.fileio import atomic_write_text, recover_tree

from .trackers import RunTrackers

METRICS = "metrics.jsonl"
CONFIG = "config.yaml"
SUMMARY = "summary.md"
LOSS_PNG = "loss.png"
REWARDS_PNG = "rewards.png"
CURRICULUM_PNG = "curriculum.png"


def new_run_dir(base: str | Path, command: str, *, now: datetime | None = None) -> Path:
    stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
    root = Path(base)
    path = root / f"{stamp}-{command}"
    for parent in (root, *root.parents):
        if parent.exists() and not parent.is_dir():
            raise ConfigError(f"output directory: {parent} is a file, not a directory (-o/--output-dir)",
                              key="output_dir")
    root.mkdir(parents=True, exist_ok=True)
    n = 1
    while True:  # mkdir is the claim: two runs started in the same second never share a directory
        try:
            path.mkdir()
            return path
        except FileExistsError:
            n += 1
            path = root / f"{stamp}-{command}-{n}"


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


@dataclass
class TopicRow:
    topic: str
    status: str
    accuracy: float | None = None
    voice: float | None = None
    attempts: int = 0
    seconds: float = 0.0
    dpo: bool = False  # the preference stage ran (whatever its method)
    method: str = "dpo"  # the preference stage's method (pipeline.preference_method): the summary's column
    note: str = ""  # why the topic failed (which threshold, which score); "" otherwise


@dataclass
class RunDirectory:
    path: Path
    command: str = "run"
    started: float = field(default_factory=time.time)
    # The experiment trackers (report_to): fed every row log_step appends, so they hold what metrics.jsonl holds.
    trackers: RunTrackers | None = None
    # On resume (keep_metrics_of): the (stage, topic, attempt) keys logged since, whose older rows were replaced.
    _resumed_keys: set[tuple[str, str, int | None]] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        recover_tree(self.path)  # a resumed run: finish interrupted saves, drop dead processes' temporaries

    # -- files --------------------------------------------------------------------------------
    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS

    @property
    def adapters_dir(self) -> Path:
        return self.path / "adapters"

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / "checkpoints"

    def discard_if_unused(self) -> bool:
        """Remove the run directory when nothing but its config was written (a run refused before any work)."""
        files = [p for p in self.path.rglob("*") if p.is_file()]
        if any(p.name != CONFIG or p.parent != self.path for p in files):
            return False
        shutil.rmtree(self.path, ignore_errors=True)
        return True

    def keep_metrics_of(self, topics: Collection[str], current: str | None = None) -> int:
        """On resume: drop the metrics rows of topics that are neither done nor in progress (``current``, the
        topic the run was inside); rows without a topic stay. The topic in progress keeps its rows: a resume
        continues its stages from their step checkpoints, and each row a resumed stage logs again replaces the
        old ones from that step on (:meth:`log_step`), so the curve has every step once. Returns the rows dropped."""
        self._resumed_keys = set()
        kept: list[str] = []
        dropped = 0
        for line in self._metric_lines():
            try:
                topic = json.loads(line).get("topic")
            except (json.JSONDecodeError, AttributeError):
                dropped += 1  # a row cut by the kill
                continue
            if topic is None or topic in topics or topic == current:
                kept.append(line)
            else:
                dropped += 1
        if dropped:
            self._write_metric_lines(kept)
        return dropped

    def _metric_lines(self) -> list[str]:
        return self.metrics_path.read_text(encoding="utf-8").splitlines() if self.metrics_path.is_file() else []

    def _write_metric_lines(self, lines: Sequence[str]) -> None:
        atomic_write_text(self.metrics_path, "".join(f"{line}\n" for line in lines))

    def _replace_from(self, stage: str, topic: str, attempt: int | None, step: int) -> None:
        """The first row a resumed stage logs: drop the rows of the same stage, topic and attempt from ``step`` on
        (the killed run logged them after its last checkpoint; the resumed run logs them again)."""
        def superseded(line: str) -> bool:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                return False
            return (row.get("stage") == stage and row.get("topic") == topic and row.get("attempt", attempt) == attempt
                    and isinstance(row.get("step"), int) and row["step"] >= step)

        lines = self._metric_lines()
        kept = [line for line in lines if not superseded(line)]
        if len(kept) != len(lines):
            self._write_metric_lines(kept)

    def write_config(self, yaml_text: str) -> Path:
        return _readable(atomic_write_text(self.path / CONFIG, yaml_text))

    def log_step(self, stage: str, topic: str | None, step: int, metrics: Mapping[str, Any],
                 attempt: int | None = None) -> None:
        if self._resumed_keys is not None and topic is not None and (stage, topic, attempt) not in self._resumed_keys:
            self._resumed_keys.add((stage, topic, attempt))
            self._replace_from(stage, topic, attempt, step)
        row: dict[str, Any] = {"stage": stage, "topic": topic, "step": step}
        if attempt is not None:
            row["attempt"] = attempt
        for key, value in metrics.items():
            if key in row:
                continue
            row[key] = _clean(value)
        if "lr" not in row and "learning_rate" in row:
            row["lr"] = row["learning_rate"]
        row["timestamp"] = round(time.time(), 3)
        with self.metrics_path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")
        if self.trackers is not None:
            self.trackers.log_row(row)

    def read_metrics(self) -> list[dict[str, Any]]:
        if not self.metrics_path.is_file():
            return []
        rows = []
        for line in self.metrics_path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    continue  # a line cut by Ctrl-C
        return rows

    # -- plots --------------------------------------------------------------------------------
    def write_plots(self) -> list[Path]:
        return write_plots(self.read_metrics(), self.path)

    # -- summary ------------------------------------------------------------------------------
    def write_summary(self, *, title: str, topics: Sequence[TopicRow] = (), facts: Mapping[str, Any] | None = None,
                      extra: str = "") -> Path:
        lines = [f"# {title}", ""]
        elapsed = time.time() - self.started
        facts = {**(facts or {}), "wall time": f"{elapsed:.1f} s"}
        for key, value in facts.items():
            lines.append(f"- **{key}**: {value}")
        lines.append("")
        if topics:
            lines += [f"| topic | status | accuracy | voice | {preference_column(topics)} | attempts | time (s) |",
                      "|---|---|---|---|---|---|---|"]
            for row in topics:
                lines.append(f"| {row.topic} | {row.status} | {_fmt(row.accuracy)} | {_fmt(row.voice)} | "
                             f"{'yes' if row.dpo else 'no'} | {row.attempts} | {row.seconds:.1f} |")
            lines.append("")
            notes = [row for row in topics if row.note]
            if notes:
                lines += ["Why topics failed (scores of the model right after the topic's own training):", ""]
                lines += [f"- **{row.topic}**: {row.note}" for row in notes] + [""]
        if (self.path / CURRICULUM_PNG).is_file():
            lines += ["## Curriculum: accuracy and voice per topic, before vs after", "",
                      f"![{CURRICULUM_PNG}]({CURRICULUM_PNG})", ""]
        plots = [name for name in (LOSS_PNG, REWARDS_PNG) if (self.path / name).is_file()]
        if plots:
            lines += ["## Curves", ""] + [f"![{name}]({name})" for name in plots] + [""]
        if extra:
            lines += [extra.rstrip(), ""]
        return _readable(atomic_write_text(self.path / SUMMARY, "\n".join(lines)))


def preference_column(rows: Sequence[TopicRow]) -> str:
    """The preference stage's column title: its method (``ORPO``), all of them when rows differ (``DPO/ORPO``)."""
    methods = list(dict.fromkeys(row.method for row in rows)) or ["dpo"]
    return "/".join(m.upper() for m in methods)


def _readable(path: Path) -> Path:
    return path  # atomic writes give files the mode the user's umask allows (mindprint_interfaces.fileio)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def write_plots(rows: Sequence[Mapping[str, Any]], out_dir: Path) -> list[Path]:
    """loss.png (when any step has a loss) and rewards.png (when a preference stage logged rewards): see
    :mod:`.plots`."""
    from .plots import write_plots as write

    return write(rows, out_dir)
