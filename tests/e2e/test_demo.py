"""`mindprint demo` end to end on the real SmolLM2-135M-Instruct (slow: minutes on a 2-core CPU)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import yaml

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
BUDGET_SECONDS = 300  # issue 21: the full demo in <= 5 min on 2 quiet CPU cores, on either backend


def mindprint_cmd() -> list[str]:
    script = Path(sys.executable).parent / "mindprint"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "mindprint_trainer"]


def run_demo(tmp_path: Path, backend: str) -> tuple[subprocess.CompletedProcess[str], float]:
    env = {**os.environ, "COLUMNS": "220"}
    env.pop("MINDPRINT_BACKEND", None)
    started = time.monotonic()
    proc = subprocess.run([*mindprint_cmd(), "demo", "--backend", backend, "-o", str(tmp_path / "runs")],
                          capture_output=True, text=True, env=env, timeout=3 * BUDGET_SECONDS, check=False)
    return proc, time.monotonic() - started


def check_run(tmp_path: Path, proc: subprocess.CompletedProcess[str]) -> Path:
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "before / after" in proc.stdout
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1
    run = runs[0]
    for name in ("config.yaml", "metrics.jsonl", "loss.png", "summary.md", "before_after.jsonl"):
        assert (run / name).is_file(), name
    assert (run / "loss.png").read_bytes()[:8] == PNG_MAGIC
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert {r["stage"] for r in rows} >= {"sft"}
    assert len({r["topic"] for r in rows}) == 4
    answers = [json.loads(line) for line in (run / "before_after.jsonl").read_text().splitlines()]
    assert len(answers) == 8
    assert any(a["before"] != a["after"] for a in answers)
    summary = (run / "summary.md").read_text()
    assert "## Before / after" in summary and "| topic | status |" in summary
    return run


def promise_gaps(run: Path) -> list[str]:
    """What the demo's promises of issue 21 miss in this run: every topic passes, and per topic the quiz's facts
    are as right after training as before (scored by the evaluator; before_after.jsonl)."""
    gaps: list[str] = []
    result = json.loads((run / "pipeline_result.json").read_text())
    topics = [t for u in result["units"] for c in u["chapters"] for t in c["topics"]]
    gaps += [f"{t['topic_id']} {t['status']}" for t in topics if t["status"] != "passed"]
    answers = [json.loads(line) for line in (run / "before_after.jsonl").read_text().splitlines()]
    by_topic: dict[str, list[tuple[float, float]]] = {}
    for a in answers:
        by_topic.setdefault(a["topic"], []).append((a["scores_before"]["facts"], a["scores_after"]["facts"]))
    for topic, pairs in by_topic.items():
        before, after = (sum(p[i] for p in pairs) / len(pairs) for i in (0, 1))
        if after < before:
            gaps.append(f"{topic}: facts {before:.2f} before, {after:.2f} after")
    summary = (run / "summary.md").read_text()
    assert ("- **facts kept**: yes" in summary) == (not any("facts" in g for g in gaps))
    return gaps


def check_promises(run: Path) -> None:
    # the pass threshold means something: the base model's answers would not pass a single topic (hard)
    threshold = float(yaml.safe_load((run / "config.yaml").read_text())["pipeline"]["topic_pass_threshold"])
    answers = [json.loads(line) for line in (run / "before_after.jsonl").read_text().splitlines()]
    by_topic: dict[str, list[dict[str, float]]] = {}
    for a in answers:
        by_topic.setdefault(a["topic"], []).append(a["scores_before"])
    for topic, scores in by_topic.items():
        base = sum((s["accuracy"] + s["voice"]) / 2 for s in scores) / len(scores)
        assert base < threshold, f"{topic}: the base model scores {base:.2f} >= {threshold}"
    gaps = promise_gaps(run)
    if gaps:  # issue 21 point 3 is not met yet (2026-12-02: the first topic scores 0.47 < 0.55): reported
        pytest.xfail("demo promises not met yet: " + "; ".join(gaps))


def check_budget(elapsed: float) -> str | None:
    """The demo's wall time against issue 21's budget (5 min on 2 quiet CPU cores), reported, not asserted.

    Speed is measured and reported, never asserted in a test (README, Standards): the same code took 116 s
    (torch) / 223 s (MLX) on the 2-core Intel Xeon VM of 2026-12-03 and 323 s / 386 s on a 2-core AMD EPYC VM
    without AVX512 the same day. Over the budget, the test warns with the figure (shown in pytest's summary), and
    docs/demo.md keeps the measured table; the functional checks above and below still fail the test.
    """
    load = os.getloadavg()[0] / (os.cpu_count() or 1)
    print(f"\ndemo wall time: {elapsed:.0f} s (budget {BUDGET_SECONDS} s on 2 quiet cores; load/core {load:.1f})")
    if load > 1.5:
        return (f"demo took {elapsed:.0f} s, but the machine is overloaded (load/core {load:.1f}); "
                "the time budget is not checked")
    if elapsed >= BUDGET_SECONDS:
        warnings.warn(f"demo took {elapsed:.0f} s, over the {BUDGET_SECONDS} s budget on this machine "
                      f"({platform.processor() or platform.machine()}, {os.cpu_count()} cores)", stacklevel=2)
    return None


@pytest.mark.slow
@pytest.mark.torch
def test_demo_torch(tmp_path: Path) -> None:
    proc, elapsed = run_demo(tmp_path, "pytorch")
    run = check_run(tmp_path, proc)
    # DPO ran on at least one topic (the curriculum is built so that SFT leaves the voice to DPO).
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert any(r["stage"] == "dpo" for r in rows)
    assert (run / "rewards.png").read_bytes()[:8] == PNG_MAGIC
    busy = check_budget(elapsed)  # the time is reported whatever the promises below say
    check_promises(run)  # an unmet promise is reported (xfail) even on a busy machine
    if busy:
        pytest.skip(busy)


@pytest.mark.slow
@pytest.mark.mlx
def test_demo_mlx(tmp_path: Path) -> None:
    pytest.importorskip("mindprint_mlx")
    proc, elapsed = run_demo(tmp_path, "mlx")
    run = check_run(tmp_path, proc)
    busy = check_budget(elapsed)
    check_promises(run)
    if busy:
        pytest.skip(busy)
