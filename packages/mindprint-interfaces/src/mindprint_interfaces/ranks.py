"""Rank-0-writes-then-everyone-waits, shared by the backends' data-parallel code.

Each backend supplies its own notion of "main process" and its own barrier (torch.distributed
or mx.distributed); the ordering rule lives here once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def on_main_then_wait(fn: Callable[[], T], *, is_main: bool, barrier: Callable[[], None]) -> T | None:
    """Run ``fn`` on the main process only (e.g. write an adapter), then make every process wait for it.

    An exception on the main process is re-raised there *after* the barrier, so the other
    processes are not left waiting for a rank that will never arrive.
    """
    result: T | None = None
    error: BaseException | None = None
    if is_main:
        try:
            result = fn()
        except BaseException as exc:  # re-raised below, after the barrier
            error = exc
    barrier()
    if error is not None:
        raise error
    return result
