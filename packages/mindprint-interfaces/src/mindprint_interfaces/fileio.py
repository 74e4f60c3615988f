"""Atomic directory writes: a crash mid-save never leaves a half-written adapter or checkpoint.

A save of ``X`` goes through siblings named after the writing process (``PID``):

1. write ``.X.tmp-PID-*`` and fsync every file (incomplete until renamed);
2. rename it to ``.X.new-PID`` (complete);
3. rename ``X`` to ``.X.old-PID`` — the commit point;
4. rename ``.X.new-PID`` to ``X``, then remove ``.X.old-PID``.

A kill anywhere leaves ``X`` or a complete sibling. :func:`recover_directory` (run before every save
of ``X`` and by :func:`recover_tree` when a run starts or resumes) repairs what a dead process left:
``X`` missing -> the complete new version is moved into place (or the old one when there is none);
``X`` present -> the leftovers are removed. Temporaries of live processes are never touched.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def fsync_tree(path: Path) -> None:
    for root, _dirs, files in os.walk(path):
        for name in files:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    dir_fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


_SIBLING = re.compile(r"^\.(?P<name>.+)\.(?P<kind>tmp|new|old)-(?P<pid>\d+)(?:-.*)?$")
_LEGACY_TMP = re.compile(r"^\.(?P<name>.+)\.tmp-[A-Za-z0-9_]{8}$")  # mkdtemp names of older versions (no PID)


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    except OSError:
        return False
    return True


def _fsync_dir(path: Path) -> None:
    dir_fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _stale_siblings(parent: Path) -> dict[str, list[tuple[str, Path]]]:
    """``name -> [(kind, path)]`` of the swap siblings in ``parent`` left by processes that are gone."""
    found: dict[str, list[tuple[str, Path]]] = {}
    try:
        entries = list(os.scandir(parent))
    except (FileNotFoundError, NotADirectoryError):
        return found
    for entry in entries:
        m = _SIBLING.match(entry.name)
        if m is not None:
            if _pid_alive(int(m["pid"])):
                continue
            found.setdefault(m["name"], []).append((m["kind"], Path(entry.path)))
            continue
        legacy = _LEGACY_TMP.match(entry.name)
        if legacy is not None:
            found.setdefault(legacy["name"], []).append(("tmp", Path(entry.path)))
    return found


def _recover(dst: Path, siblings: list[tuple[str, Path]]) -> list[Path]:
    if not dst.exists() and not dst.is_symlink():
        def newest(kind: str) -> Path | None:
            paths = [p for k, p in siblings if k == kind and p.exists()]
            return max(paths, key=lambda p: p.stat().st_mtime_ns) if paths else None
        pick = newest("new") or newest("old")  # finish the swap; else roll back to the previous version
        if pick is not None:
            os.replace(pick, dst)
            _fsync_dir(dst.parent)
    removed = []
    for _kind, path in siblings:
        if path.exists() or path.is_symlink():
            _remove(path)
            removed.append(path)
    return removed


def recover_directory(target: str | Path) -> list[Path]:
    """Finish or roll back an interrupted save of ``target`` and delete the temporaries of dead processes.

    Returns the leftovers removed. Safe to call at any time; a live writer's files are left alone.
    """
    dst = Path(target)
    siblings = _stale_siblings(dst.parent).get(dst.name, [])
    return _recover(dst, siblings) if siblings else []


def recover_tree(root: str | Path) -> list[Path]:
    """:func:`recover_directory` for every interrupted save under ``root`` (called when a run starts or resumes)."""
    base = Path(root)
    removed: list[Path] = []
    if not base.is_dir():
        return removed
    for dirpath, _dirs, _files in os.walk(base, topdown=True):
        parent = Path(dirpath)
        for name, siblings in _stale_siblings(parent).items():
            removed.extend(_recover(parent / name, siblings))
        _dirs[:] = [d for d in _dirs if not _SIBLING.match(d) and not _LEGACY_TMP.match(d)]
    return removed


def current_umask() -> int:
    """The process umask (read by setting and restoring it: there is no getter before Python 3.13's os)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_directory(target: str | Path) -> Iterator[Path]:
    """Yield a temp dir; on success it replaces ``target`` atomically, on error it is removed."""
    dst = Path(target)
    dst.parent.mkdir(parents=True, exist_ok=True)
    recover_directory(dst)
    pid = os.getpid()
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.tmp-{pid}-", dir=dst.parent))
    new = dst.parent / f".{dst.name}.new-{pid}"
    try:
        os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp's 0700 is for the temporary, not for the result
        yield tmp
        fsync_tree(tmp)
        if new.exists():
            _remove(new)
        os.replace(tmp, new)
        _fsync_dir(dst.parent)
        old: Path | None = None
        if dst.exists():
            old = dst.parent / f".{dst.name}.old-{pid}"
            if old.exists():
                _remove(old)
            os.replace(dst, old)
        try:
            os.replace(new, dst)
        except BaseException:
            if old is not None and not dst.exists():
                os.replace(old, dst)  # roll back: the target is never left missing
            raise
        _fsync_dir(dst.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        for leftover in (tmp, new):
            if leftover.exists():
                _remove(leftover)


def atomic_write_text(target: str | Path, text: str) -> Path:
    """Write a file atomically (temp file + fsync + rename)."""
    dst = Path(target)
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dst.name}.tmp-{os.getpid()}-", dir=dst.parent)
    try:
        os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp's 0600 is for the temporary, not for the result
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp_name, dst)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    return dst


def atomic_write_json(target: str | Path, data: Any) -> Path:
    return atomic_write_text(target, json.dumps(data, indent=2, sort_keys=True) + "\n")
