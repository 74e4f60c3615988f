"""The --interleave turn-taking: strict alternation, and the waiting time kept out of the step clock."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from tools.bench.baton import Baton, make_pipes, pass_on_behalf
from tools.bench.measure import StepClock


def _pair(tmp_path: Path) -> tuple[Baton, Baton, Path, Path]:
    a, b = make_pipes(tmp_path, ("a", "b"))
    return Baton(a, b, first=True, timeout=10), Baton(b, a, first=False, timeout=10), a, b


def test_jobs_take_strict_turns_and_waiting_is_not_timed(tmp_path: Path) -> None:
    first, second, _, _ = _pair(tmp_path)
    log: list[str] = []
    clocks: dict[str, StepClock] = {}

    def job(name: str, baton: Baton, work_s: float) -> None:
        if not baton.first:
            baton.wait()
        clock = StepClock(warmup=0, baton=baton)
        clocks[name] = clock
        clock.train_start()
        for _ in range(4):
            log.append(name)
            time.sleep(work_s)  # "one training step"
            clock.step()
        clock.done()
        baton.release()

    threads = [threading.Thread(target=job, args=("fast", first, 0.01)),
               threading.Thread(target=job, args=("slow", second, 0.15))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert log == ["fast", "slow"] * 4
    # the fast job waited ~0.15 s for every slow step, yet its steps are timed at ~0.01 s
    assert max(clocks["fast"].step_times()) < 0.1, clocks["fast"].step_times()
    assert min(clocks["slow"].step_times()) >= 0.15
    assert first.waited > 0.4 and first.turns == 4 and not first.broken


def test_partner_that_ends_early_does_not_leave_the_other_waiting(tmp_path: Path) -> None:
    first, second, _, b = _pair(tmp_path)
    second.timeout = 30
    # the first job's process died before passing the baton: the driver passes it on its behalf
    pass_on_behalf(b)
    start = time.perf_counter()
    second.wait()
    assert time.perf_counter() - start < 5 and not second.broken
    first.release()  # the crashed side's pipes, closed here by the test
    second.release()


def test_wait_gives_up_after_the_timeout(tmp_path: Path) -> None:
    first, second, _, _ = _pair(tmp_path)
    second.timeout = 0.2
    second.wait()
    assert "did not pass the baton" in second.broken
    second.wait()  # no longer waits
    assert second.waited < 1.0
    first.release()
    second.release()
