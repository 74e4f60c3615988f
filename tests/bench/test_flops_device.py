"""#19 point 5 of the bench: ``--device`` / ``--quick`` (the GPU run) exercised on its CPU path.

One ``--device cpu --quick --smoke`` run on the tiny model (module fixture): it is the code path
``--device cuda --quick`` takes except for the device string and the settings that go with it
(``tools.bench.cli.DEVICE_SETTINGS``). ``--threads 1`` keeps it light on a shared test machine.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tools.bench.cli import COMPARISONS, DEVICE_SETTINGS, QUICK_COMPARISONS, main, unsupported_on_device
from tools.bench.jobs import JOBS, missing_requirement

QUICK_JOBS = {name for c in COMPARISONS if c.key in QUICK_COMPARISONS for name in (c.mindprint, c.peer)}


@pytest.fixture(scope="module")
def quick_run(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    out = tmp_path_factory.mktemp("bench-quick")
    code = main(["--device", "cpu", "--quick", "--smoke", "--threads", "1", "--model", str(tiny_model_dir),
                 "--out-dir", str(out), "--fresh"])
    return out, code


def _results(out: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((out / "results.json").read_text())
    return loaded


@pytest.mark.timeout(900)
def test_quick_cpu_run_records_device_dtype_and_batch(quick_run: tuple[Path, int]) -> None:
    out, code = quick_run
    assert code == 0
    assert (out / "RESULTS.md").read_text().startswith("# mindprint benchmarks")
    results = _results(out)
    meta = results["meta"]
    cpu = DEVICE_SETTINGS["cpu"]
    assert (meta["device"], meta["dtype"], meta["batch_size"], meta["quick"]) == ("cpu", cpu["dtype"],
                                                                                  cpu["batch_size"], True)
    assert "float32 on cpu" in (out / "RESULTS.md").read_text()
    assert set(results["jobs"]) == QUICK_JOBS  # --quick: the SFT and DPO comparisons only
    ran = 0
    for name, row in results["jobs"].items():
        if "skipped" in row:
            assert missing_requirement(next(j for j in JOBS if j.name == name)), (name, row["skipped"])
            continue
        assert row["ok"], (name, row.get("error"), row.get("traceback") or row.get("log_tail"))
        assert (row["device"], row["dtype"], row["batch_size"]) == ("cpu", "float32", cpu["batch_size"]), name
        assert "device_peak_mb" not in row  # accelerators only
        ran += 1
    assert ran


def test_device_cuda_without_cuda_fails_before_any_job(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this host has CUDA")
    out = tmp_path / "out"
    with pytest.raises(SystemExit, match=r"^--device cuda: torch\.cuda\.is_available\(\) is False on this host$"):
        main(["--device", "cuda", "--quick", "--smoke", "--out-dir", str(out)])
    assert not out.exists()  # nothing built, nothing run


def test_mlx_rows_are_skipped_on_cuda_with_a_reason() -> None:
    mlx_job = next(j for j in JOBS if j.backend == "mlx")
    torch_job = next(j for j in JOBS if j.backend == "torch")
    assert "MLX has no CUDA device" in (unsupported_on_device(mlx_job, "cuda") or "")
    assert unsupported_on_device(mlx_job, "mps") is None and unsupported_on_device(mlx_job, "cpu") is None
    assert unsupported_on_device(torch_job, "cuda") is None
