"""Fixtures for the MLX backend tests: a CPU fp32 MLXBackend and fresh tiny models. Nothing is mocked."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mindprint_interfaces import BackendConfig
from mindprint_mlx import MLXBackend

SFT_RECORDS: list[dict[str, Any]] = [
    {"instruction": f"What is {i} plus {i}?", "output": f"The answer is {2 * i}."} for i in range(6)
]
PREFERENCE_RECORDS: list[dict[str, Any]] = [
    {"prompt": f"What is {i} plus {i}?", "chosen": f"The answer is {2 * i}.", "rejected": "bad bad no yes"}
    for i in range(6)
]


@pytest.fixture(scope="session")
def backend() -> MLXBackend:
    return MLXBackend(BackendConfig("mlx", device="cpu", dtype="float32", seed=0))


@pytest.fixture
def load_tiny(backend: MLXBackend, tiny_model_dir: Path) -> Callable[[], Any]:
    """Each call loads a fresh tiny model (training mutates the model it is given)."""
    return lambda: backend.load_model(tiny_model_dir)


@pytest.fixture
def tiny(load_tiny: Callable[[], Any]) -> Any:
    return load_tiny()


@pytest.fixture
def sft_records() -> list[dict[str, Any]]:
    return [dict(r) for r in SFT_RECORDS]


@pytest.fixture
def preference_records() -> list[dict[str, Any]]:
    return [dict(r) for r in PREFERENCE_RECORDS]
