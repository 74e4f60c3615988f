"""Both backends on the same weights. Skipped (with the reason) when a backend is not installed."""

from __future__ import annotations

from pathlib import Path

import pytest

from mindprint_interfaces import Backend, create_backend
from mindprint_interfaces.errors import MindprintError

from ..random_adapter import write_peft_random_adapter


def _backend(name: str) -> Backend:
    try:
        return create_backend(name, device="cpu", dtype="float32", seed=0)
    except MindprintError as exc:
        pytest.skip(f"{name} backend unavailable: {exc}")


@pytest.fixture(scope="session")
def torch_backend() -> Backend:
    return _backend("pytorch")


@pytest.fixture(scope="session")
def mlx_backend() -> Backend:
    return _backend("mlx")


@pytest.fixture(scope="session", params=["tiny", pytest.param("smollm2", marks=pytest.mark.slow)])
def weights_dir(request: pytest.FixtureRequest) -> Path:
    name: str = request.param
    fixture = "tiny_model_dir" if name == "tiny" else "smollm2_dir"
    path: Path = request.getfixturevalue(fixture)
    return path


@pytest.fixture(scope="session")
def random_adapter_dir(tmp_path_factory: pytest.TempPathFactory, weights_dir: Path) -> Path:
    """A PEFT adapter with random (non-zero) A and B, written by PEFT itself: a shared starting point."""
    return write_peft_random_adapter(weights_dir, tmp_path_factory.mktemp("random-adapter"))
