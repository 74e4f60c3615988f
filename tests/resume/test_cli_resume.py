"""``mindprint sft --resume PATH --backend pytorch`` continues a run an MLX trainer checkpointed (#18)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.trainer.helpers import run_mindprint

from .common import RECORDS, backend, run

pytestmark = [pytest.mark.torch, pytest.mark.mlx, pytest.mark.slow]  # two CLI processes: ~1-3 min


def test_cli_resumes_an_mlx_run_on_pytorch(tiny_model_dir: Path, tmp_path: Path) -> None:
    cfg = {"learning_rate": 1e-3, "max_steps": 4, "per_device_batch_size": 3, "gradient_accumulation_steps": 2,
           "save_steps": 2, "seed": 42, "lr_scheduler": "constant", "max_length": 256}
    mac = tmp_path / "mac-run" / "work"
    run(backend("mlx"), tiny_model_dir, {**cfg, "output_dir": str(mac)})
    data = tmp_path / "sft.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    sets = [a for key, value in cfg.items() for a in ("--set", f"sft.{key}={value}")]
    res = run_mindprint("sft", "--backend", "pytorch", "--model", str(tiny_model_dir), "--data", str(data), *sets,
                        "--resume", str(tmp_path / "mac-run"), "-o", str(tmp_path / "gpu"))
    assert res.returncode == 0, res.stderr
    assert "resuming from" in res.stderr and "checkpoint-2" in res.stderr
    (run_dir,) = [p for p in (tmp_path / "gpu").iterdir() if p.is_dir()]
    steps = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps == [3, 4]
    assert (run_dir / "adapters" / "sft" / "adapter_model.safetensors").is_file()
    # another training key: refused with the reason, exit 2
    res = run_mindprint("sft", "--backend", "pytorch", "--model", str(tiny_model_dir), "--data", str(data), *sets,
                        "--set", "sft.learning_rate=0.01", "--resume", str(tmp_path / "mac-run"),
                        "-o", str(tmp_path / "refused"))
    assert res.returncode == 2 and "training key learning_rate: 0.001 (checkpoint) vs 0.01" in res.stderr
