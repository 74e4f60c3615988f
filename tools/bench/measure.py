"""Measurement primitives: per-step wall clock, peak RSS, load average, thread pinning.

Timing model (the same for every side of every comparison)::

    t_setup ── trainer construction ── t_train ── step 1 ── ... ── step W ── step W+1 ... ── step N ── t_done
               (data prep, reference         (warm-up: compile,            (timed steps)
                precompute, model copies)      first allocations)

* steady seconds/step = mean of the step times after the W warm-up steps;
* one-off seconds     = (end of warm-up - t_setup) - W * steady  +  (t_done - end of step N)
  i.e. everything that is not steady-state stepping: trainer/data set-up, reference log-prob
  precompute, compilation and first-touch allocations, and end-of-training work;
* amortised over R steps = (one-off + R * steady) / R   (R = 100 by default).

With ``--interleave`` the clock runs only while the job holds the baton (:mod:`tools.bench.baton`):
time spent waiting for the partner job is not part of any of these figures.
"""

from __future__ import annotations

import os
import resource
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .baton import Baton

THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
              "NUMEXPR_NUM_THREADS")


def thread_env(threads: int) -> dict[str, str]:
    """Environment pinning every BLAS/OpenMP pool to ``threads`` (set before torch/mlx are imported)."""
    return {name: str(threads) for name in THREAD_ENV}


def load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def _status_kb(key: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def rss_mb() -> float | None:
    kb = _status_kb("VmRSS")
    return round(kb / 1024, 1) if kb is not None else None


def hwm_mb() -> float | None:
    """Peak RSS since process start or since the last :func:`reset_peak_rss` (Linux VmHWM)."""
    kb = _status_kb("VmHWM")
    return round(kb / 1024, 1) if kb is not None else None


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux: ``echo 5 > /proc/self/clear_refs``). False if unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def ru_maxrss_mb() -> float:
    """Whole-process peak RSS (never reset). ru_maxrss is in KiB on Linux, bytes on macOS."""
    raw = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    import sys

    return round(raw / (1024 * 1024) if sys.platform == "darwin" else raw / 1024, 1)


def device_peak_mb(backend: str, device: str) -> tuple[float | None, str]:
    """Accelerator memory of this process and what it is: the allocator's peak on CUDA
    (``torch.cuda.max_memory_allocated``) and MLX (``mx.get_peak_memory``); MPS has no peak counter, so torch on
    MPS reports ``torch.mps.driver_allocated_memory`` at the end. Only called for ``--device cuda|mps``."""
    if backend == "mlx":
        import mlx.core as mx

        return round(mx.get_peak_memory() / 2**20, 1), "mx.get_peak_memory"
    import torch

    if device == "cuda":
        return round(torch.cuda.max_memory_allocated() / 2**20, 1), "torch.cuda.max_memory_allocated"
    return round(torch.mps.driver_allocated_memory() / 2**20, 1), "torch.mps.driver_allocated_memory (at the end)"


@dataclass
class StepClock:
    """Collects the timestamps of the timing model above. ``step()`` is called at the end of each step."""

    warmup: int
    t_setup: float = 0.0
    t_train: float = 0.0
    t_done: float = 0.0
    ends: list[float] = field(default_factory=list)
    losses: list[float | None] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)  # real (non-pad) tokens per step, when the side exposes them
    baton: Baton | None = None  # --interleave: pass the turn to the partner job after every step

    def now(self) -> float:
        """Wall time minus the time spent waiting for the partner job."""
        return time.perf_counter() - (self.baton.waited if self.baton is not None else 0.0)

    def setup(self) -> None:
        self.t_setup = self.now()

    def train_start(self) -> None:
        self.t_train = self.now()

    def step(self, loss: float | None = None) -> None:
        self.ends.append(self.now())
        self.losses.append(loss)
        prev = self.ends[-2] if len(self.ends) > 1 else self.t_train
        print(f"[bench] step {len(self.ends)}: {self.ends[-1] - prev:.3f} s", flush=True)  # progress in the job log
        if self.baton is not None:
            self.baton.swap()

    def done(self) -> None:
        self.t_done = self.now()

    def step_times(self) -> list[float]:
        out: list[float] = []
        prev = self.t_train
        for end in self.ends:
            out.append(end - prev)
            prev = end
        return out

    def summary(self, amortise_over: int = 100) -> dict[str, Any]:
        times = self.step_times()
        w = min(self.warmup, max(len(times) - 1, 0))
        timed = times[w:]
        if not timed:
            raise RuntimeError("no steps were recorded (the trainer never called the step hook)")
        steady = statistics.fmean(timed)
        warm_end = self.ends[w - 1] if w else self.t_train
        one_off = (warm_end - self.t_setup) - w * steady + max(self.t_done - self.ends[-1], 0.0)
        return {
            "steps_recorded": len(times),
            "warmup_steps": w,
            "timed_steps": len(timed),
            "step_times_s": [round(t, 4) for t in times],
            "sec_per_step": steady,
            "sec_per_step_median": statistics.median(timed),
            "sec_per_step_stdev": statistics.stdev(timed) if len(timed) > 1 else 0.0,
            "setup_s": self.t_train - self.t_setup,
            "first_step_s": times[0],
            "teardown_s": max(self.t_done - self.ends[-1], 0.0),
            "one_off_s": max(one_off, 0.0),
            "amortised_steps": amortise_over,
            "amortised_sec_per_step": (max(one_off, 0.0) + amortise_over * steady) / amortise_over,
        }


def timed_steps(result: dict[str, Any]) -> list[float]:
    """A job result's timed step times: pooled over its rounds, or its one round without the warm-up."""
    return list(result.get("pooled_timed_steps_s") or result["step_times_s"][result["warmup_steps"]:])


def combine_rounds(first: dict[str, Any], later: dict[str, Any]) -> dict[str, Any]:
    """One job measured in several rounds (``--rounds``, alternating job order): pool the timed steps.

    Running A then B lets a drift in machine speed (load from earlier work decaying, thermal state)
    favour whichever runs second; with the order reversed in the next round and the timed steps
    pooled, a drift cancels out instead of showing up as a ratio.
    """
    if not (first.get("ok") and later.get("ok")):
        return later if later.get("ok") else first
    rounds = first.get("rounds") or [_round_summary(first)]
    timed = timed_steps(first) + timed_steps(later)
    merged = dict(first)
    steady = statistics.fmean(timed)
    one_off = statistics.fmean([r["one_off_s"] for r in rounds] + [later["one_off_s"]])
    merged.update({
        "rounds": [*rounds, _round_summary(later)],
        "pooled_timed_steps_s": timed,
        "timed_steps": len(timed),
        "sec_per_step": steady,
        "sec_per_step_median": statistics.median(timed),
        "sec_per_step_stdev": statistics.stdev(timed) if len(timed) > 1 else 0.0,
        "one_off_s": one_off,
        "amortised_sec_per_step": (one_off + first["amortised_steps"] * steady) / first["amortised_steps"],
        "train_peak_rss_mb": max(first.get("train_peak_rss_mb") or 0.0, later.get("train_peak_rss_mb") or 0.0),
        "peak_rss_mb": max(first.get("peak_rss_mb") or 0.0, later.get("peak_rss_mb") or 0.0),
        "loadavg_end": later.get("loadavg_end"),
    })
    if first.get("tokens_per_step") is not None and later.get("tokens_per_step") is not None:
        n_first = len(timed) - later["timed_steps"]
        tokens = (first["tokens_per_step"] * n_first + later["tokens_per_step"] * later["timed_steps"]) / len(timed)
        merged["tokens_per_step"] = tokens
        merged["tokens_per_s"] = tokens / steady
    return merged


def _round_summary(result: dict[str, Any]) -> dict[str, Any]:
    return {k: result.get(k) for k in ("sec_per_step", "sec_per_step_median", "one_off_s", "loadavg_start",
                                       "loadavg_end", "train_peak_rss_mb")}
