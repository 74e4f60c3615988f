"""Atomic directory swaps survive SIGKILL at every step; the next run recovers and cleans up."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mindprint_interfaces.fileio import atomic_directory, atomic_write_text, recover_directory, recover_tree

# The child writes <target> (two files holding its version) and SIGKILLs itself right before the
# os.replace call number KILL_AT (0 = while the files are being written, before any rename).
CHILD = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from mindprint_interfaces.fileio import atomic_directory

    target, version, kill_at = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    real_replace = os.replace
    calls = 0

    def replace(src, dst):
        global calls
        calls += 1
        if calls == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return real_replace(src, dst)

    os.replace = replace
    with atomic_directory(target) as tmp:
        (tmp / "a.txt").write_text(version)
        if kill_at == 0:
            os.kill(os.getpid(), signal.SIGKILL)
        (tmp / "b.txt").write_text(version)
""")


def _write_in_child(tmp_path: Path, target: Path, version: str, kill_at: int) -> int:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    proc = subprocess.run([sys.executable, str(script), str(target), version, str(kill_at)], check=False)
    return proc.returncode


def _version(target: Path) -> str:
    a, b = (target / "a.txt").read_text(), (target / "b.txt").read_text()
    assert a == b, "a half-written directory became the target"
    return a


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


@pytest.mark.parametrize("kill_at", [0, 1, 2, 3])
def test_kill_during_overwrite_always_recovers_a_complete_target(tmp_path: Path, kill_at: int) -> None:
    target = tmp_path / "out" / "adapter"
    assert _write_in_child(tmp_path, target, "v1", kill_at=-1) == 0
    assert _version(target) == "v1"
    rc = _write_in_child(tmp_path, target, "v2", kill_at=kill_at)
    assert rc == -signal.SIGKILL
    assert _leftovers(target.parent), "the kill left no temporary: the test did not hit the swap"
    if kill_at == 3:  # killed between the two renames: nothing named <target> is there
        assert not target.exists()
    removed = recover_directory(target)
    assert removed
    # before the commit point (X -> old, call 2) the old version stays; after it the new one is finished
    assert _version(target) == ("v2" if kill_at == 3 else "v1")
    assert _leftovers(target.parent) == []


def test_kill_during_first_save_leaves_the_new_version_or_nothing(tmp_path: Path) -> None:
    target = tmp_path / "adapter"
    assert _write_in_child(tmp_path, target, "v1", kill_at=2) == -signal.SIGKILL  # after tmp -> new
    recover_tree(tmp_path)
    assert _version(target) == "v1"
    assert _write_in_child(tmp_path, tmp_path / "other", "v1", kill_at=0) == -signal.SIGKILL
    recover_tree(tmp_path)
    assert not (tmp_path / "other").exists()
    assert _leftovers(tmp_path) == []


def test_next_save_and_recover_tree_clean_stale_temporaries(tmp_path: Path) -> None:
    nested = tmp_path / "ckpt" / "adapters" / "t1"
    assert _write_in_child(tmp_path, nested, "v1", kill_at=-1) == 0
    assert _write_in_child(tmp_path, nested, "v2", kill_at=2) == -signal.SIGKILL
    # a file written by atomic_write_text of a killed process
    (tmp_path / "ckpt" / ".state.json.tmp-999999999-abcd").write_text("{")
    removed = recover_tree(tmp_path / "ckpt")
    assert len(removed) >= 2
    assert _version(nested) == "v1"
    assert _leftovers(nested.parent) == [] and _leftovers(tmp_path / "ckpt") == []
    # an atomic_directory save of the same target also recovers first
    assert _write_in_child(tmp_path, nested, "v3", kill_at=2) == -signal.SIGKILL
    with atomic_directory(nested) as tmp:
        (tmp / "a.txt").write_text("v4")
        (tmp / "b.txt").write_text("v4")
    assert _version(nested) == "v4" and _leftovers(nested.parent) == []


def test_live_writers_files_are_left_alone(tmp_path: Path) -> None:
    mine = tmp_path / f".adapter.tmp-{os.getpid()}-zzzz"
    mine.mkdir()
    assert recover_tree(tmp_path) == []
    assert mine.exists()


def test_failed_rename_rolls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "adapter"
    with atomic_directory(target) as tmp:
        (tmp / "a.txt").write_text("v1")
        (tmp / "b.txt").write_text("v1")
    real = os.replace
    calls: list[str] = []

    def failing(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        calls.append(str(dst))
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        real(src, dst)

    monkeypatch.setattr(os, "replace", failing)
    with pytest.raises(OSError), atomic_directory(target) as tmp:
        (tmp / "a.txt").write_text("v2")
        (tmp / "b.txt").write_text("v2")
    monkeypatch.setattr(os, "replace", real)
    assert _version(target) == "v1" and _leftovers(tmp_path) == []
    atomic_write_text(tmp_path / "f.txt", "x")
    assert _leftovers(tmp_path) == []
