"""TensorBoard: event files written by tensorboardX (no TensorFlow, no torch), read by ``tensorboard --logdir``."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tensorboardX import SummaryWriter

TEXT_SUFFIXES = (".md", ".yaml", ".yml", ".json", ".txt")


class TensorBoardLogger:
    """Scalars per metric key and step; the config and text artefacts as text, PNG artefacts as images."""

    def __init__(self, log_dir: str | Path | None = None) -> None:
        self.log_dir = Path(log_dir) if log_dir else None
        self.writer: Any = None

    def start(self, run_name: str, config: Mapping[str, Any], run_dir: Path) -> None:
        self.log_dir = self.log_dir or run_dir / "tensorboard"
        self.writer = SummaryWriter(logdir=str(self.log_dir), flush_secs=10)
        self.writer.add_text("config", "```\n" + json.dumps(config, indent=2, default=str) + "\n```", 0)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, step)

    def log_artifact(self, path: Path) -> None:
        if path.suffix == ".png":
            import matplotlib.image

            image = matplotlib.image.imread(str(path))
            self.writer.add_image(path.name, image[..., :3], 0, dataformats="HWC")
        elif path.suffix in TEXT_SUFFIXES:
            self.writer.add_text(path.name, path.read_text(encoding="utf-8"), 0)

    def finish(self, success: bool = True) -> None:
        self.writer.flush()
        self.writer.close()
