"""Weights & Biases: one W&B run per mindprint run (online, or offline files that ``wandb sync`` uploads later)."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import wandb


class WandbLogger:
    """Each ``<stage>[/<topic>]`` series is plotted against its own step (``<prefix>/step``, via ``define_metric``),
    so steps that restart per topic keep their values; files go into the run's files."""

    def __init__(self, project: str = "mindprint", mode: str | None = None, entity: str | None = None,
                 dir: str | Path | None = None) -> None:
        self.project = project
        self.mode = mode  # None: WANDB_MODE or wandb's default
        self.entity = entity
        self.dir = Path(dir) if dir else None
        self.run: Any = None
        self.prefixes: set[str] = set()

    def start(self, run_name: str, config: Mapping[str, Any], run_dir: Path) -> None:
        directory = self.dir or run_dir
        directory.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(project=self.project, entity=self.entity, name=run_name, config=dict(config),
                              dir=str(directory), mode=self.mode,  # type: ignore[arg-type]
                              settings=wandb.Settings(silent=True, console="off"))

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        rows: dict[str, dict[str, float]] = {}
        for key, value in metrics.items():
            rows.setdefault(key.rpartition("/")[0], {})[key] = value
        for prefix, values in rows.items():
            if prefix not in self.prefixes:
                self.run.define_metric(f"{prefix}/step")
                self.run.define_metric(f"{prefix}/*", step_metric=f"{prefix}/step")
                self.prefixes.add(prefix)
            self.run.log({**values, f"{prefix}/step": step})

    def log_artifact(self, path: Path) -> None:
        # A copy in the W&B run's files directory (wandb.save of an outside file would symlink it and warn).
        files = Path(self.run.dir)
        shutil.copyfile(path, files / path.name)
        self.run.save(str(files / path.name), base_path=str(files), policy="now")

    def finish(self, success: bool = True) -> None:
        self.run.finish(exit_code=0 if success else 1)
