"""What a library is doing right now: long phases (model load, tokenisation, reference pass, evaluation,
merges, saves) announced as events, for an application to render.

The library side only announces::

    with phase("evaluate", detail="u1/c/alpha", total=len(records)) as p:
        for record in records:
            ...
            p.advance()

and never prints. An application renders by registering a :class:`PhaseListener` (``with listening(l):``
or :func:`add_listener`); with no listener a phase costs a few attribute reads. Phases nest (a merge loads a
model): listeners see every start before the matching end, innermost last. A listener's exception is not
swallowed: it reaches the library code that announced the phase.

Standard library only, so every package may announce phases (``mindprint-pipeline`` depends on the
interfaces alone).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["Phase", "PhaseListener", "add_listener", "listeners", "listening", "phase", "remove_listener"]


@dataclass
class Phase:
    """One phase in flight: ``name`` says what (``"load model"``, ``"tokenise"``, ``"reference pass"``,
    ``"evaluate"``, ``"merge"``, ``"save adapter"``), ``detail`` on what; ``done`` of ``total`` items
    (``total`` None when the phase cannot count)."""

    name: str
    detail: str = ""
    total: int | None = None
    done: int = 0
    started: float = field(default_factory=time.monotonic)
    _listeners: tuple[PhaseListener, ...] = field(default=(), repr=False, compare=False)

    @property
    def label(self) -> str:
        return f"{self.name} {self.detail}" if self.detail else self.name

    def advance(self, n: int = 1) -> None:
        """``n`` more items done (a question answered, a batch of reference log-probs computed)."""
        self.done += n
        for listener in self._listeners:
            listener.on_phase_advance(self)


class PhaseListener(Protocol):
    """What an application implements to render phases (all three are called; implement them as no-ops when
    not needed)."""

    def on_phase_start(self, phase: Phase) -> None: ...
    def on_phase_advance(self, phase: Phase) -> None: ...
    def on_phase_end(self, phase: Phase, failed: bool) -> None: ...


_lock = threading.Lock()
_listeners: list[PhaseListener] = []


def add_listener(listener: PhaseListener) -> None:
    with _lock:
        if listener not in _listeners:
            _listeners.append(listener)


def remove_listener(listener: PhaseListener) -> None:
    with _lock:
        if listener in _listeners:
            _listeners.remove(listener)


def listeners() -> tuple[PhaseListener, ...]:
    with _lock:
        return tuple(_listeners)


@contextmanager
def listening(listener: PhaseListener) -> Iterator[PhaseListener]:
    """Register ``listener`` for the duration of the block."""
    add_listener(listener)
    try:
        yield listener
    finally:
        remove_listener(listener)


@contextmanager
def phase(name: str, detail: str = "", total: int | None = None) -> Iterator[Phase]:
    """Announce a phase for the duration of the block (the listeners registered when it starts see all of it).
    ``failed`` is True for the end of a phase left by an exception, which then propagates unchanged."""
    current = Phase(name, detail, total, _listeners=listeners())
    for listener in current._listeners:
        listener.on_phase_start(current)
    failed = True
    try:
        yield current
        failed = False
    finally:
        for listener in current._listeners:
            listener.on_phase_end(current, failed)
