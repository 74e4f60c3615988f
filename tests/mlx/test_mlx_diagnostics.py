"""Diagnostics for `mindprint doctor`: BLAS discovery and the CPU matmul benchmark."""

from __future__ import annotations

import pytest

from mindprint_mlx import blas
from mindprint_mlx.diagnostics import advice, cpu_matmul_gflops

pytestmark = pytest.mark.mlx


def test_cpu_matmul_gflops_reports_both() -> None:
    result = cpu_matmul_gflops(m=64, k=64, n=64, repeats=2)
    assert result["mlx_gflops"] > 0 and result["numpy_gflops"] > 0
    assert result["shape"] == (64, 64, 64)
    assert isinstance(result["blas_libraries"], list)


def test_blas_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(blas.ENV_VAR, "off")
    assert blas.find_fast_blas() is None
    monkeypatch.setenv(blas.ENV_VAR, "/opt/custom/libopenblas.so")
    assert blas.find_fast_blas() == "/opt/custom/libopenblas.so"


def test_advice_text() -> None:
    assert advice(100.0, 120.0) == "ok"
    import sys

    if sys.platform.startswith("linux"):
        assert "OpenBLAS" in advice(4.0, 150.0)
