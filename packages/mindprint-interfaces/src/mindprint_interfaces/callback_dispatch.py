"""Calling the user's trainer callbacks from a backend's training loop.

A training loop turns its own failures (NaN loss, out of memory) into
``TrainingResult(success=False)``, but an exception raised by *user* callback code is not a
training failure: it is the user's way to stop (e.g. the pipeline's ``PipelineInterrupted``)
or a bug in their code, and must reach them. The backends call callbacks through these
helpers, which wrap such an exception in :class:`CallbackRaised` so the loop can restore its
state and re-raise the original.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any


class CallbackRaised(Exception):
    """Carries an exception raised inside a user callback through the training loop."""

    def __init__(self, original: Exception) -> None:
        self.original = original
        super().__init__(f"a training callback raised {type(original).__name__}: {original}")


def _call_hooks(callbacks: Sequence[Any], name: str, args: Callable[[], tuple[Any, ...]]) -> None:
    """Call ``name`` on every callback that defines it, each with fresh ``args()`` (a callback that mutates
    its metrics dict does not change what the next one sees); a hook's exception travels as CallbackRaised."""
    for cb in callbacks:
        hook = getattr(cb, name, None)
        if hook is None:
            continue
        try:
            hook(*args())
        except Exception as exc:
            raise CallbackRaised(exc) from exc


def notify_step(callbacks: Sequence[Any], step: int, metrics: Mapping[str, float]) -> None:
    _call_hooks(callbacks, "on_step", lambda: (step, dict(metrics)))


def notify_save(callbacks: Sequence[Any], path: Path) -> None:
    _call_hooks(callbacks, "on_save", lambda: (path,))


@contextlib.contextmanager
def original_callback_errors() -> Iterator[None]:
    """Outside a training loop's failure handling: let a callback's own exception through unwrapped."""
    try:
        yield
    except CallbackRaised as exc:
        raise exc.original from None
