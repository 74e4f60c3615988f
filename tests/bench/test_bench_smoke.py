"""Smoke test of tools/bench: every job whose library is installed runs 2 steps on the tiny model.

Not a measurement (the real benchmark is ``uv run --group bench python -m tools.bench``, never part
of the test run); this checks the plumbing: each side trains, reports per-step times, tokens, peak
RSS and the fixed-set losses, and the JSON + markdown are written with finite numbers.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tools.bench.cli import main
from tools.bench.jobs import JOBS, missing_requirement

NUMBERS = ("sec_per_step", "tokens_per_s", "tokens_per_step", "one_off_s", "amortised_sec_per_step", "peak_rss_mb",
           "train_peak_rss_mb")


@pytest.mark.timeout(600)
def test_bench_smoke(tiny_model_dir: Path, tmp_path: Path) -> None:
    code = main(["--smoke", "--model", str(tiny_model_dir), "--out-dir", str(tmp_path), "--fresh"])
    results = json.loads((tmp_path / "results.json").read_text())
    assert (tmp_path / "RESULTS.md").read_text().startswith("# mindprint benchmarks")
    expected = [j for j in JOBS if not j.full_only]
    assert set(results["jobs"]) == {j.name for j in expected}
    ran = []
    for job in expected:
        row = results["jobs"][job.name]
        if "skipped" in row:  # library / backend not installed here: the row says why
            assert row["skipped"]
            assert missing_requirement(job), (job.name, row["skipped"])  # never skipped when it can run
            continue
        ran.append(job.name)
        assert row["ok"], (job.name, row.get("error"), row.get("traceback") or row.get("log_tail"))
        assert row["steps_recorded"] == 2 and row["timed_steps"] == 1
        for key in NUMBERS:
            assert isinstance(row[key], (int, float)) and math.isfinite(row[key]) and row[key] >= 0, (job.name, key)
        after = row["eval_after"]["loss" if row["task"] == "sft" else "dpo_loss"]
        assert math.isfinite(after)
    assert ran, "no benchmark side is installed"
    assert code == 0
    for comp in results["comparisons"]:
        if comp["status"] != "not measured":
            assert math.isfinite(comp["ratio"]) and comp["ratio"] > 0
            # same weights, same tokens: the step-0 checks agree across sides of one backend
            before_mp, before_peer = comp["eval_before_mindprint"], comp["eval_before_peer"]
            for key in before_mp:
                assert before_mp[key] == pytest.approx(before_peer[key], rel=1e-3), (comp["key"], key)
