"""``mindprint train --resume`` after a Ctrl-C inside a topic: metrics.jsonl holds every step of the run once.

The first run is stopped (SIGINT, the graceful first Ctrl-C) inside topic 1's SFT, which checkpoints every
step; the resume continues that stage from its newest checkpoint. The interrupted topic's rows logged before the
stop must survive the resume (they are not logged again) and the rows the resumed stage logs must not repeat.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.trainer.helpers import mindprint_exe, run_mindprint

pytestmark = [pytest.mark.mlx, pytest.mark.slow]  # two CLI processes on the tiny model: ~1 min

TOPIC = "u/c/alpha"
SFT = "".join(json.dumps({"instruction": f"What is {a} plus {b}?", "output": f"{a} plus {b} is {a + b}.",
                          "topic_id": TOPIC}) + "\n" for a in range(1, 4) for b in range(1, 4))
SETS = ["--set", "sft.save_steps=1", "--set", "pipeline.sft_epochs_per_topic=1", "--set", "sft.per_device_batch_size=1",
        "--set", "pipeline.max_retries_per_topic=0", "--set", "pipeline.eval_max_new_tokens=2",
        "--set", "pipeline.eval_max_records=1", "--set", "pipeline.merge_after_unit=false"]


def test_train_resumed_inside_a_topic_logs_every_step_once(tiny_model_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "sft_data.jsonl").write_text(SFT)
    args = ["train", "--backend", "mlx", "--model", str(tiny_model_dir), "--data-dir", str(data), *SETS]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    env.pop("MINDPRINT_BACKEND", None)
    proc = subprocess.Popen([*mindprint_exe(), *args, "-o", str(tmp_path / "runs")], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    deadline, rows = time.monotonic() + 300, 0
    metrics: list[Path] = []
    while time.monotonic() < deadline and proc.poll() is None and rows < 2:
        metrics = list((tmp_path / "runs").glob("*/metrics.jsonl"))
        rows = len(metrics[0].read_text().splitlines()) if metrics else 0
        time.sleep(0.05)
    if proc.poll() is not None:
        pytest.fail(f"the run ended before its second step was logged: {proc.communicate()[1]}")
    assert rows >= 2, "no second step within 300 s"
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=300)
    run = metrics[0].parent
    before = [json.loads(line)["step"] for line in metrics[0].read_text().splitlines()]
    assert proc.returncode == 130 and "resume with" in stderr, stderr
    assert 2 <= len(before) < 9, before  # stopped inside the stage (9 steps)

    res = run_mindprint(*args, "--resume", str(run), timeout=600)
    assert res.returncode == 0, res.stderr
    rows_after = [json.loads(line) for line in metrics[0].read_text().splitlines()]
    sft = [r for r in rows_after if r["stage"] == "sft"]
    assert [r["step"] for r in sft] == list(range(1, 10)), [r["step"] for r in sft]
    assert {r["topic"] for r in sft} == {TOPIC} and {r["attempt"] for r in sft} == {0}
