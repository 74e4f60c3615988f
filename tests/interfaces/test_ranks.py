"""Rank-0-writes-then-wait: every rank reaches the barrier, even when the write fails on rank 0."""

from __future__ import annotations

import pytest

from mindprint_interfaces.ranks import on_main_then_wait


def test_main_runs_and_everyone_waits() -> None:
    calls: list[str] = []
    assert on_main_then_wait(lambda: calls.append("write") or 7, is_main=True, barrier=lambda: calls.append("barrier")) == 7
    assert calls == ["write", "barrier"]
    calls.clear()
    assert on_main_then_wait(lambda: calls.append("write"), is_main=False, barrier=lambda: calls.append("barrier")) is None
    assert calls == ["barrier"]


def test_failure_on_main_is_raised_after_the_barrier() -> None:
    calls: list[str] = []

    def fail() -> None:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        on_main_then_wait(fail, is_main=True, barrier=lambda: calls.append("barrier"))
    assert calls == ["barrier"]
