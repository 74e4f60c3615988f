"""Ctrl-C that always leaves a resumable run.

A KeyboardInterrupt raised wherever the signal lands can be swallowed (Python ignores
exceptions raised inside ``__del__``, e.g. a datasets.Dataset being collected) and the run then
silently continues. So the first Ctrl-C only *requests* a stop: a pipeline callback turns the
request into ``PipelineInterrupted`` at the next training step or topic boundary, which the
backends and the pipeline handle deterministically (last finished topic checkpointed). A second
Ctrl-C interrupts at once.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import FrameType
from typing import Any

from mindprint_pipeline.events import BasePipelineCallback, PipelineInterrupted


class StopRequest(BasePipelineCallback):
    """Pipeline callback that raises PipelineInterrupted once a stop was requested."""

    def __init__(self) -> None:
        self.requested = False

    def _check(self) -> None:
        if self.requested:
            raise PipelineInterrupted("stopped by Ctrl-C")

    def on_topic_start(self, topic_id: str, attempt: int) -> None:
        self._check()

    def on_step(self, stage: str, topic_id: str, step: int, metrics: Mapping[str, Any]) -> None:
        self._check()

    def on_topic_end(self, progress: Any) -> None:
        self._check()


@contextmanager
def graceful_sigint(stop: StopRequest, announce: Any = None) -> Iterator[StopRequest]:
    """While active, the first SIGINT sets ``stop.requested``; the second raises KeyboardInterrupt."""
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        if stop.requested:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt
        stop.requested = True
        if announce is not None:
            announce("stopping after the current step (Ctrl-C again to stop now)")

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


def terminate_as_interrupt() -> Any:
    """SIGTERM (``kill``, ``docker stop``) does what Ctrl-C does at that moment: inside :func:`graceful_sigint`
    the first one requests a stop, elsewhere it raises KeyboardInterrupt (the commands save and exit 130).
    Returns the previous handler (None off the main thread), for ``signal.signal(SIGTERM, previous)``."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum: int, frame: FrameType | None) -> None:
        current = signal.getsignal(signal.SIGINT)
        if callable(current):
            current(signal.SIGINT, frame)
        else:
            raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, handler)
