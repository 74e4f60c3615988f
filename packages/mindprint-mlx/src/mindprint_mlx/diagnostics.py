"""Numbers for ``mindprint doctor``: which BLAS MLX uses on this CPU and how fast it multiplies."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from . import blas


def loaded_blas_libraries() -> list[str]:
    """Shared libraries with BLAS in their name mapped into this process (Linux only)."""
    maps = Path("/proc/self/maps")
    if not maps.is_file():
        return []
    seen: list[str] = []
    for line in maps.read_text(errors="replace").splitlines():
        parts = line.split()
        if len(parts) >= 6:
            name = parts[-1]
            base = name.rsplit("/", 1)[-1].lower()
            if any(k in base for k in ("blas", "mkl", "blis")) and name not in seen:
                seen.append(name)
    return seen


def cpu_matmul_gflops(m: int = 512, k: int = 576, n: int = 1536, repeats: int = 10) -> dict[str, Any]:
    """fp32 matmul throughput on the CPU, MLX vs numpy, in GFLOP/s (SmolLM2-135M MLP shapes by default).

    Importing mlx here triggers :func:`blas.preload_fast_blas` first, like the backend does.
    """
    import numpy as np

    preloaded = blas.preload_fast_blas()
    import mlx.core as mx

    rng = np.random.default_rng(0)
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = rng.standard_normal((k, n), dtype=np.float32)
    flops = 2.0 * m * k * n

    def timed(fn: Any) -> float:
        fn()
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
        return (time.perf_counter() - start) / repeats

    t_np = timed(lambda: a @ b)
    xa = mx.array(a)
    xb = mx.array(b)
    with mx.stream(mx.cpu):
        t_mx = timed(lambda: mx.eval(mx.matmul(xa, xb)))
    mlx_gflops = flops / t_mx / 1e9
    numpy_gflops = flops / t_np / 1e9
    return {
        "shape": (m, k, n),
        "mlx_gflops": mlx_gflops,
        "numpy_gflops": numpy_gflops,
        "ratio": mlx_gflops / numpy_gflops if numpy_gflops else float("nan"),
        "preloaded_blas": preloaded or blas.loaded_library(),
        "blas_libraries": loaded_blas_libraries(),
        "platform": sys.platform,
        "advice": advice(mlx_gflops, numpy_gflops),
    }


def advice(mlx_gflops: float, numpy_gflops: float) -> str:
    if not sys.platform.startswith("linux") or mlx_gflops >= 0.3 * numpy_gflops:
        return "ok"
    return ("MLX is using the reference BLAS bundled with the mlx-cpu wheel (slow). Install OpenBLAS "
            "(Debian/Ubuntu: apt-get install libopenblas0-pthread; Fedora: dnf install openblas; "
            "conda: conda install openblas) - mindprint-mlx loads it automatically - or start Python with "
            "LD_PRELOAD=/path/to/libopenblas.so.0. See the mindprint-mlx README.")


if __name__ == "__main__":  # pragma: no cover - manual benchmark
    print(cpu_matmul_gflops())
