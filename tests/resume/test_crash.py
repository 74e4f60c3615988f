"""SIGKILL a training process at random moments (mid-step and mid-checkpoint), resume, compare (#18).

The run saves a full checkpoint after every step, so a random kill lands inside a checkpoint write about as
often as inside a step. After every kill each ``checkpoint-<step>`` directory that exists must be complete
(``load_checkpoint`` verifies every file against the hashes written last); temporaries are never taken for
checkpoints. The run that finally completes (resumed from the newest checkpoint) must equal the
uninterrupted run bitwise: the same loss history and the same adapter tensors (MLX on CPU is deterministic).
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mindprint_kit import checkpoints

from .common import RECORDS, adapter_arrays, backend, run

# ~1 min on an idle 2-core machine (5 processes), ~4 min under load: outside the fast suite.
pytestmark = [pytest.mark.mlx, pytest.mark.slow]

WORKER = Path(__file__).with_name("crash_worker.py")
CFG: dict[str, Any] = {"learning_rate": 5e-3, "max_steps": 24, "per_device_batch_size": 2, "save_steps": 1,
                       "lora_dropout": 0.1, "seed": 11, "warmup_steps": 2}


def _start(model_dir: Path, out: Path, inputs: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, str(WORKER), str(model_dir), str(out), str(inputs)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == "training", f"worker did not start: {line!r}"
    return proc


def test_sigkill_anywhere_then_resume_is_the_uninterrupted_run(tiny_model_dir: Path, tmp_path: Path) -> None:
    reference, _ = run(backend("mlx"), tiny_model_dir, {**CFG, "output_dir": str(tmp_path / "reference")})
    inputs = tmp_path / "records.json"
    inputs.write_text(json.dumps(RECORDS))
    (tmp_path / "config.json").write_text(json.dumps(CFG))
    out = tmp_path / "run"
    rng = random.Random(2026)
    kills = 0
    interrupted_writes = 0  # kills that left a checkpoint's temporary behind (caught mid-write)
    seen_steps: list[int] = []
    for _ in range(3):
        proc = _start(tiny_model_dir, out, inputs)
        time.sleep(rng.uniform(0.05, 1.5))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
        interrupted_writes += any(p.name.startswith(".checkpoint-") for p in out.iterdir())
        names = checkpoints.checkpoint_dirs(out)
        for _, path in names:
            checkpoints.load_checkpoint(path)  # raises if a checkpoint directory were incomplete
        seen_steps.append(names[-1][0] if names else 0)
        if (out / "result.json").exists():
            break
    assert kills >= 1, "the worker finished before any kill: lengthen the run"
    proc = _start(tiny_model_dir, out, inputs)
    assert proc.wait(timeout=600) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["success"], result["error"]
    assert result["history"] == reference.metrics["history"], (
        f"checkpoints seen after the kills: {seen_steps}, kills mid-write: {interrupted_writes}")
    mine, theirs = adapter_arrays(out / "adapter"), adapter_arrays(Path(reference.adapter_path))
    for site in theirs:
        for a, b in zip(mine[site], theirs[site], strict=True):
            assert np.array_equal(a, b), site
