"""``--threads N``: how many CPU threads the numeric libraries use.

The thread pools of OpenMP (torch's intra-op pool), MKL, OpenBLAS (the BLAS MLX is given by
``mindprint_mlx.blas``), BLIS, Accelerate and numexpr read their size from the environment once, when the
library loads — so :func:`apply_threads` runs in ``cli.main`` right after parsing, before any backend is
imported, and also resizes torch's pool when torch is already loaded (in-process use).

The default, chosen for the host (:func:`default_threads`): the CPUs this process may run on (its affinity
mask, i.e. what ``taskset`` / ``docker --cpuset-cpus`` allow), capped by a cgroup v2 CPU quota
(``docker --cpus``), halved when simultaneous multithreading is active (one thread per physical core: a
second thread on a core's sibling slows dense matmuls down), divided among the ``--nproc`` processes. A variable already set in the environment
(``OMP_NUM_THREADS=4 mindprint ...``) wins over the default; ``--threads`` wins over both.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

from mindprint_interfaces import ConfigError

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "BLIS_NUM_THREADS",
                    "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


def _available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def _cgroup_quota(cpu_max: Path = Path("/sys/fs/cgroup/cpu.max")) -> int | None:
    try:
        quota, period = cpu_max.read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    return max(1, math.ceil(int(quota) / int(period)))


def _smt_active(flag: Path = Path("/sys/devices/system/cpu/smt/active")) -> bool:
    try:
        return flag.read_text().strip() == "1"
    except OSError:
        return False


def default_threads() -> int:
    """The host's default (see the module docstring for the rule)."""
    n = _available_cpus()
    quota = _cgroup_quota()
    if quota is not None:
        n = min(n, quota)
    if _smt_active() and n > 1:
        n //= 2
    return max(1, n)


def apply_threads(threads: int | None, *, processes: int = 1) -> int:
    """Size the thread pools: ``threads`` when given (``--threads``), else the environment's or the host default
    shared by ``processes`` local processes (``--nproc``; they inherit the variables). Returns the number
    torch/BLAS will use."""
    if threads is not None and threads < 1:
        raise ConfigError(f"--threads: must be >= 1, got {threads}", key="threads")
    if threads is None:
        preset = os.environ.get("OMP_NUM_THREADS", "").strip()
        n = int(preset) if preset.isdigit() and int(preset) > 0 else max(1, default_threads() // max(1, processes))
        for name in THREAD_VARIABLES:
            os.environ.setdefault(name, str(n))
    else:
        n = threads
        for name in THREAD_VARIABLES:
            os.environ[name] = str(n)
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "set_num_threads"):
        torch.set_num_threads(n)
    return n
