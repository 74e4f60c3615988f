"""Fixtures for the pipeline tests: the bundled 2-unit x 2-topic curriculum in a temp data_dir."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A copy of tests/pipeline/data (sft_data.jsonl, preference_data.jsonl, markers.json)."""
    dst = tmp_path / "data"
    shutil.copytree(DATA, dst)
    return dst
