"""Import mlx and mlx-lm on demand, with the install command when they are missing."""

from __future__ import annotations

import importlib
from types import ModuleType

from mindprint_interfaces import BackendNotFoundError

from . import blas

INSTALL_HINT = ("pip install mindprint-mlx  (mlx-lm and mlx: mlx[cpu] on Linux, Metal mlx on macOS; "
                "or: pip install 'mindprint-trainer[mlx]')")


def require_mlx() -> tuple[ModuleType, ModuleType]:
    """Return ``(mlx.core, mlx_lm)``; raise BackendNotFoundError('mlx-lm not installed: ...') if missing."""
    blas.preload_fast_blas()  # must happen before the first `import mlx.core`
    try:
        core = importlib.import_module("mlx.core")
        mlx_lm = importlib.import_module("mlx_lm")
    except ImportError as exc:
        raise BackendNotFoundError(f"mlx-lm not installed: {INSTALL_HINT} [import failed: {exc}]") from exc
    return core, mlx_lm
