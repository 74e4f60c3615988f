"""Fast BLAS for MLX on Linux CPUs.

The ``mlx-cpu`` wheel links the *reference* (netlib) BLAS it bundles (``mlx_cpu.libs/libblas-*.so``):
correct but unoptimised and single-threaded, roughly 30x slower than OpenBLAS for the matrix
multiplies that dominate training. ``libmlx.so`` resolves ``cblas_sgemm`` through the dynamic
linker, so an optimised BLAS loaded into the global symbol scope *before* ``mlx.core`` is imported
takes its place — exactly what ``LD_PRELOAD=/path/libopenblas.so.0`` does, done from Python.

:func:`preload_fast_blas` does that for you; :class:`mindprint_mlx.MLXBackend` calls it before
importing mlx. Control it with ``MINDPRINT_MLX_BLAS``: ``auto`` (default: use OpenBLAS/BLIS/MKL if
installed), ``off`` (keep the bundled reference BLAS), or a path to a shared library.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from pathlib import Path

ENV_VAR = "MINDPRINT_MLX_BLAS"
OFF_VALUES = frozenset({"off", "0", "no", "false", "reference", "none"})

# Well-known locations (Debian/Ubuntu, Fedora/RHEL, Arch, conda) of BLAS libraries exporting cblas_sgemm.
_CANDIDATE_NAMES = ("openblas", "blis", "mkl_rt")
_CANDIDATE_PATHS = (
    "/usr/lib/x86_64-linux-gnu/libopenblas.so.0",
    "/usr/lib/aarch64-linux-gnu/libopenblas.so.0",
    "/usr/lib64/libopenblas.so.0",
    "/usr/lib/libopenblas.so.0",
    "/usr/lib/x86_64-linux-gnu/libblis.so.4",
    "/usr/lib/aarch64-linux-gnu/libblis.so.4",
)

_loaded: str | None = None


def loaded_library() -> str | None:
    """The library :func:`preload_fast_blas` loaded in this process (None if none)."""
    return _loaded


def find_fast_blas() -> str | None:
    """Path or soname of an optimised BLAS on this machine, or None."""
    setting = os.environ.get(ENV_VAR, "auto").strip()
    if setting.lower() in OFF_VALUES:
        return None
    if setting and setting.lower() != "auto":
        return setting
    prefixes = [os.environ.get("CONDA_PREFIX"), sys.prefix]
    for prefix in prefixes:
        if prefix:
            for name in ("libopenblas.so.0", "libopenblas.so", "libmkl_rt.so.2", "libmkl_rt.so"):
                p = Path(prefix) / "lib" / name
                if p.is_file():
                    return str(p)
    for path in _CANDIDATE_PATHS:
        if Path(path).is_file():
            return path
    for name in _CANDIDATE_NAMES:
        found = ctypes.util.find_library(name)
        if found:
            return found
    return None


def preload_fast_blas() -> str | None:
    """Load an optimised BLAS into the global symbol scope so mlx's matmuls use it.

    Only effective on Linux and only before ``mlx.core`` is imported (returns None otherwise, or
    when nothing suitable is installed, or when ``MINDPRINT_MLX_BLAS=off``). Returns what was loaded.
    """
    global _loaded
    if _loaded is not None:
        return _loaded
    if not sys.platform.startswith("linux") or "mlx.core" in sys.modules:
        return None
    candidate = find_fast_blas()
    if candidate is None:
        return None
    try:
        ctypes.CDLL(candidate, mode=ctypes.RTLD_GLOBAL)
    except OSError:
        return None
    _loaded = candidate
    return candidate
