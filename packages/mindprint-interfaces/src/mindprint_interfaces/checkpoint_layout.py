"""Where a trainer's full-state checkpoints live and how a reader tells how far each got (standard library only).

The files are written by ``mindprint_kit.checkpoints``; these names are shared so that code depending on the
interfaces only (the curriculum pipeline) can find a stage's checkpoints without importing the kit:

* ``checkpoint_root(adapter_dir)``: ``<adapter_dir>-checkpoints`` (a ``train(adapter_dir=...)`` run's saves);
* ``checkpoint-<step>/`` under it, each with ``mindprint_state.json`` written last (``global_step``,
  ``total_steps``); the kit verifies every file of a checkpoint when it resumes from it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

PREFIX = "checkpoint-"
STATE_FILE = "mindprint_state.json"
NAME = re.compile(r"^checkpoint-(\d+)$")


def checkpoint_root(adapter_dir: str | Path) -> Path:
    """The directory ``train(adapter_dir=...)`` writes its ``checkpoint-<step>/`` into."""
    target = Path(adapter_dir)
    return target.parent / f"{target.name}-checkpoints"


@dataclass(frozen=True)
class StepCheckpoint:
    path: Path
    global_step: int
    total_steps: int


def step_checkpoints(root: str | Path) -> list[StepCheckpoint]:
    """The ``checkpoint-<step>`` directories under ``root`` whose state file reads, newest first.

    A directory without a readable state file (never the case after a kill: the kit writes it last and renames the
    whole directory into place) is left out; file hashes are checked by the kit when it resumes."""
    base = Path(root)
    if not base.is_dir():
        return []
    found: list[StepCheckpoint] = []
    for path in base.iterdir():
        match = NAME.match(path.name)
        if match is None or not path.is_dir():
            continue
        try:
            state = json.loads((path / STATE_FILE).read_text(encoding="utf-8"))
            found.append(StepCheckpoint(path, int(state["global_step"]), int(state["total_steps"])))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return sorted(found, key=lambda c: c.global_step, reverse=True)
