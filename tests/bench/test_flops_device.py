"""#19 points 4 and 5 of the bench: the FLOP/s fraction of the machine's matmul throughput, and ``--device`` /
``--quick`` (the GPU run) exercised on its CPU path.

One ``--device cpu --quick --smoke`` run on the tiny model (module fixture) serves both: it is the code path
``--device cuda --quick`` takes except for the device string and the settings that go with it
(``tools.bench.cli.DEVICE_SETTINGS``). ``--threads 1``: a 2-thread OpenMP matmul on a loaded test machine waits a
scheduler slice per call, which makes the tiny probe's figure meaningless; one thread has no barrier.
"""

from __future__ import annotations

import json
import math
import shutil
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


@pytest.mark.timeout(900)
def test_flops_fraction_is_computed_and_old_files_say_not_measured(quick_run: tuple[Path, int],
                                                                  tiny_model_dir: Path, tmp_path: Path) -> None:
    out, _code = quick_run
    results = _results(out)
    config = json.loads((tiny_model_dir / "config.json").read_text())
    probes = [t for t in results["throughput"].values() if t.get("ok")]
    assert probes, results["throughput"]
    for probe in probes:
        assert math.isfinite(probe["flops_per_s"]) and probe["flops_per_s"] > 0
        head = probe["per_shape"]["lm_head"]
        assert (head["k"], head["n"], head["count"]) == (config["hidden_size"], config["vocab_size"], 1)
        assert probe["per_shape"]["q_proj"]["count"] == config["num_hidden_layers"]
    ok_jobs = [name for name, row in results["jobs"].items() if row.get("ok")]
    rows = {r["job"]: r for r in results["efficiency"]}
    assert set(rows) == set(ok_jobs)
    for name in ok_jobs:
        row = rows[name]
        assert row["status"] in ("met", "missed"), row
        assert math.isfinite(row["fraction"]) and 0 < row["fraction"] < 2, row
        assert row["achieved_flops_per_s"] == pytest.approx(
            results["jobs"][name]["flops"]["per_token"] * results["jobs"][name]["tokens_per_s"])
    text = (out / "RESULTS.md").read_text()
    assert "GFLOP/s (fraction of matmul limit)" in text and " %" in text

    # a results.json from before the throughput probe: --report-only renders it, every fraction "not measured"
    old = tmp_path / "old"
    old.mkdir()
    del results["throughput"], results["efficiency"]
    (old / "results.json").write_text(json.dumps(results))
    assert main(["--report-only", "--out-dir", str(old)]) == 0
    rerendered = _results(old)
    assert rerendered["efficiency"] and all(r["status"] == "not measured" for r in rerendered["efficiency"])
    text = (old / "RESULTS.md").read_text()
    assert "matmul throughput not measured" in text
    job_lines = [line for line in text.splitlines() if line.startswith(tuple(f"| {n} |" for n in ok_jobs))]
    assert job_lines and all("| not measured |" in line for line in job_lines)
    assert "%)" not in text.split("## Every job", 1)[1]

    # jobs from before the FLOP count, with a throughput present: also "not measured", no crash
    older = tmp_path / "older"
    shutil.copytree(old, older)
    data = _results(older)
    data["throughput"] = _results(out)["throughput"]
    for row in data["jobs"].values():
        row.pop("flops", None)
    (older / "results.json").write_text(json.dumps(data))
    assert main(["--report-only", "--out-dir", str(older)]) == 0
    assert all(r["status"] == "not measured" and "FLOP count" in r["reason"] for r in _results(older)["efficiency"])


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
