"""Strict turn-taking between the two jobs of a comparison (``--interleave``).

Why: on this kind of machine (a shared VM) the speed drifts by 10-20 % over minutes, so two jobs run
one after the other can differ by more than the effect being measured, and even reversing the order
every other round needs many rounds to cancel it. With a baton the mindprint job and its peer run at
the same time but never compute at the same time: each runs one training step, hands the baton over
and sleeps until it comes back. Both sides then see the same machine, step by step, and neither
competes with the other for the cores.

The baton is a token byte passed through two named pipes (one per job). A job that waits is blocked
in ``select`` and uses no CPU. The time spent waiting is subtracted from the job's clock
(:class:`tools.bench.measure.StepClock` reads :attr:`Baton.waited`), so step times, set-up and
one-off costs are those of the job alone.

Turn order: the first job holds the baton from its start (imports, model load, trainer set-up, first
step); the other waits before it starts. After every step a job passes the baton and waits; at its
exit it passes the baton for good. The driver also passes it on a job's behalf when that job's
process ends, so a crashed job cannot leave its partner waiting.
"""

from __future__ import annotations

import os
import select
import time
from pathlib import Path

ENV = "MINDPRINT_BENCH_BATON"


class Baton:
    def __init__(self, own: str | Path, peer: str | Path, *, first: bool, timeout: float = 1800.0) -> None:
        # O_RDWR: opening never blocks and a token written before the other side opened the pipe is kept.
        self._own = os.open(own, os.O_RDWR)
        self._peer = os.open(peer, os.O_RDWR)
        self.first = first
        self.timeout = timeout
        self.waited = 0.0  # seconds spent waiting for the partner
        self.turns = 0
        self.broken = ""  # why turn-taking stopped (partner timed out); empty while it works
        self._released = False

    @classmethod
    def from_env(cls) -> Baton | None:
        """``MINDPRINT_BENCH_BATON=own_fifo;peer_fifo;first(0|1);timeout_s`` as set by the driver."""
        value = os.environ.get(ENV)
        if not value:
            return None
        own, peer, first, timeout = value.split(";")
        return cls(own, peer, first=first == "1", timeout=float(timeout))

    @staticmethod
    def env(own: Path, peer: Path, *, first: bool, timeout: float) -> dict[str, str]:
        return {ENV: f"{own};{peer};{int(first)};{timeout}"}

    def wait(self) -> None:
        """Block until the partner passes the baton (or gives up after ``timeout`` and stops taking turns)."""
        if self.broken or self._released:
            return
        start = time.perf_counter()
        ready, _, _ = select.select([self._own], [], [], self.timeout)
        if ready:
            os.read(self._own, 1)
            self.turns += 1
        else:
            self.broken = f"partner did not pass the baton within {self.timeout:.0f} s; turn-taking stopped"
        self.waited += time.perf_counter() - start

    def give(self) -> None:
        if not self._released:
            os.write(self._peer, b"x")

    def swap(self) -> None:
        """End of this job's turn: let the partner run one turn, then continue."""
        self.give()
        self.wait()

    def release(self) -> None:
        """This job is done: pass the baton for good (later waits of the partner return at once)."""
        if self._released:
            return
        self.give()
        self._released = True
        for fd in (self._own, self._peer):
            os.close(fd)


def make_pipes(directory: Path, names: tuple[str, str]) -> tuple[Path, Path]:
    paths = []
    for name in names:
        path = directory / f"{name}.baton"
        if path.exists():
            path.unlink()
        os.mkfifo(path)
        paths.append(path)
    return paths[0], paths[1]


def pass_on_behalf(pipe: Path) -> None:
    """Driver side: the job that reads ``pipe`` gets the baton (its partner's process has ended)."""
    fd = os.open(pipe, os.O_RDWR)
    try:
        os.write(fd, b"x")
    finally:
        os.close(fd)
