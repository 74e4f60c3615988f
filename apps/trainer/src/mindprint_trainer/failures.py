"""Every exception that reaches the command line as one ``error: <where>: <what>`` line and an exit code.

Exit 2: the user can fix it by changing the command, the config, the data, the model directory or the
installation. Exit 1: the work itself failed (disk full, a runtime error). A traceback only with
``--debug`` (or ``MINDPRINT_DEBUG=1``).
"""

from __future__ import annotations

import errno
import os
import re

# OSErrors the user fixes by pointing at another path (exit 2); every other OSError is a runtime failure.
_PATH_ERRORS = (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)


# Libraries with their own I/O layer (safetensors' Rust writer: "I/O error: No space left on device (os error 28)")
# raise a non-OSError for a full disk; the OS error text they carry is what says so.
_DISK_FULL = re.compile(rf"\(os error {errno.ENOSPC}\)|{re.escape(os.strerror(errno.ENOSPC))}")
_DISK_FULL_HINT = "no space left on device; free some space and run again with --resume (completed topics are kept)"


def _one_line(text: str, limit: int = 500) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit - 3] + "..."


def describe(exc: BaseException) -> tuple[int, str]:
    """``(exit code, message)`` for an exception that is not a MindprintError."""
    if isinstance(exc, OSError):
        where = exc.filename if exc.filename is not None else "file system"
        what = exc.strerror or str(exc)
        if exc.errno == errno.ENOSPC:
            return 1, _one_line(f"{where}: {_DISK_FULL_HINT}")
        return (2 if isinstance(exc, _PATH_ERRORS) else 1), _one_line(f"{where}: {what}")
    if _DISK_FULL.search(str(exc)):
        return 1, f"file system: {_DISK_FULL_HINT} ({type(exc).__name__})"
    if isinstance(exc, (ValueError, LookupError)):  # a library refusing the model or the input
        return 2, _one_line(f"{type(exc).__name__}: {exc}")
    if isinstance(exc, MemoryError):
        return 1, "out of memory: use a smaller batch, max_length or model"
    return 1, _one_line(f"internal error: {type(exc).__name__}: {exc} (run with --debug for the traceback)")
