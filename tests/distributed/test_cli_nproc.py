"""``mindprint sft|dpo|train --nproc N``: the command re-runs itself under the backend's launcher."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mindprint_trainer.launch import launcher_command, strip_nproc

from .conftest import LAUNCH_TIMEOUT, adapter_dirs
from .scripts.dist_data import SFT_RECORDS


def test_strip_nproc() -> None:
    assert strip_nproc(["sft", "--nproc", "2", "-b", "mlx"]) == ["sft", "-b", "mlx"]
    assert strip_nproc(["sft", "--nproc=4", "--data", "x"]) == ["sft", "--data", "x"]


def test_launcher_commands() -> None:
    torch_cmd = launcher_command("pytorch", 2, ["sft", "--nproc", "2", "--data", "d.jsonl"])
    assert torch_cmd[:6] == [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    assert torch_cmd[6:] == ["-m", "mindprint_trainer", "sft", "--data", "d.jsonl"]
    mlx_cmd = launcher_command("mlx", 2, ["sft", "--nproc", "2"])
    assert mlx_cmd[1:6] == ["-n", "2", "--backend", "ring", "--"]
    assert mlx_cmd[6:] == [sys.executable, "-m", "mindprint_trainer", "sft"]


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["pytorch", "mlx"])
def test_sft_nproc_2_writes_one_run_directory(backend: str, tiny_model_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "sft.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in SFT_RECORDS))
    runs = tmp_path / "runs"
    exe = Path(sys.executable).parent / "mindprint"
    proc = subprocess.run([str(exe), "sft", "--nproc", "2", "--backend", backend, "--device", "cpu", "--model",
                           str(tiny_model_dir), "--data", str(data), "--set", "sft.max_steps=2", "-o", str(runs)],
                          capture_output=True, text=True, timeout=LAUNCH_TIMEOUT,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"})
    assert proc.returncode == 0, proc.stderr[-5000:]
    (run,) = list(runs.iterdir())
    assert adapter_dirs(run) == [run / "adapters" / "sft"]
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2  # rank 0 only: one row per step
