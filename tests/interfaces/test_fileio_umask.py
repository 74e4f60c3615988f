"""Atomic writes give their results the mode the user's umask allows (not mkstemp's owner-only 0600) (#21)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from mindprint_interfaces.fileio import atomic_directory, atomic_write_json, atomic_write_text, current_umask


@pytest.fixture(params=[0o022, 0o002, 0o077])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    try:
        yield int(request.param)
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_files_and_directories_follow_the_umask(tmp_path: Path, umask: int) -> None:
    assert current_umask() == umask
    assert _mode(atomic_write_text(tmp_path / "a.txt", "x")) == 0o666 & ~umask
    assert _mode(atomic_write_json(tmp_path / "b.json", {"k": 1})) == 0o666 & ~umask
    with atomic_directory(tmp_path / "adapter") as tmp:
        (tmp / "adapter_config.json").write_text("{}")
    assert _mode(tmp_path / "adapter") == 0o777 & ~umask
    assert _mode(tmp_path / "adapter" / "adapter_config.json") == 0o666 & ~umask
    # a rewrite keeps following the umask (and stays atomic: no temporaries left beside it)
    atomic_write_text(tmp_path / "a.txt", "y")
    assert (tmp_path / "a.txt").read_text() == "y" and _mode(tmp_path / "a.txt") == 0o666 & ~umask
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "adapter", "b.json"]
