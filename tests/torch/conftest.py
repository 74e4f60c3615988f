"""Fixtures for the PyTorch backend tests: a CPU fp32 backend and fresh copies of the tiny model."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("trl")

from mindprint_interfaces import BackendConfig  # noqa: E402
from mindprint_torch import PyTorchModel, TorchBackend  # noqa: E402


@pytest.fixture(scope="session")
def backend() -> TorchBackend:
    return TorchBackend(BackendConfig("pytorch", device="cpu", dtype="float32"))


@pytest.fixture
def load_tiny(backend: TorchBackend, tiny_model_dir: Path) -> Callable[[], PyTorchModel]:
    """Each call loads a fresh tiny model (training mutates the model it is given)."""
    return lambda: backend.load_model(tiny_model_dir)


@pytest.fixture
def tiny(load_tiny: Callable[[], PyTorchModel]) -> PyTorchModel:
    return load_tiny()


@pytest.fixture(scope="session")
def sft_records() -> list[dict[str, Any]]:
    return [{"instruction": f"What is {i} plus {i}?", "output": f"The answer is {2 * i}."} for i in range(8)]


@pytest.fixture(scope="session")
def easy_pairs() -> list[dict[str, Any]]:
    return [{"prompt": f"Is answer {i} good?", "chosen": "good good good", "rejected": "bad bad bad"} for i in range(8)]
