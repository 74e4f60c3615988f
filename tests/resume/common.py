"""Shared pieces of the resume tests: runs, histories and adapter comparisons."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mindprint_interfaces import Backend, BaseCallback, create_backend
from mindprint_interfaces.errors import MindprintError
from mindprint_interfaces.testing import SFT_RECORDS
from mindprint_kit.adapter_files import read_adapter

# More records than one micro-batch, so the data order (epoch permutations) matters.
RECORDS: list[dict[str, Any]] = SFT_RECORDS + [
    {"instruction": "Name a primary colour.", "output": "Blue is a primary colour."},
    {"instruction": "What do bees make?", "output": "Bees make honey and wax."},
]


def backend(name: str) -> Backend:
    try:
        return create_backend(name, device="cpu", dtype="float32", seed=0)
    except MindprintError as exc:
        pytest.skip(f"{name} backend unavailable: {exc}")


class Losses(BaseCallback):
    def __init__(self) -> None:
        self.steps: dict[int, dict[str, float]] = {}

    def on_step(self, step: int, metrics: Mapping[str, float]) -> None:
        self.steps[step] = dict(metrics)


def run(be: Backend, model_dir: Path, cfg: dict[str, Any], *, adapter_path: Path | None = None,
        resume: Path | bool | None = None, records: list[dict[str, Any]] = RECORDS) -> tuple[Any, Losses]:
    rec = Losses()
    model = be.load_model(model_dir, adapter_path=adapter_path) if adapter_path else be.load_model(model_dir)
    trainer = be.create_sft_trainer(model, cfg, callbacks=[rec])
    result = trainer.train(records, resume_from_checkpoint=resume)
    assert result.success, result.error_message
    return result, rec


def adapter_arrays(path: Path) -> dict[Any, tuple[np.ndarray, np.ndarray]]:
    return read_adapter(path)[1]
