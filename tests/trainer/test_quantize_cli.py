"""``--quantize 4`` / ``model.quantization``: the app loads a quantized (QLoRA) base on either backend."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.trainer.helpers import run_mindprint
from tests.trainer.test_runs_tiny import only_run_dir, write_curriculum


@pytest.mark.parametrize("backend", ["mlx", pytest.param("pytorch", marks=pytest.mark.slow)])
def test_sft_on_a_4bit_base(tmp_path: Path, tiny_model_dir: Path, backend: str) -> None:
    pytest.importorskip("bitsandbytes" if backend == "pytorch" else "mlx_lm")
    data = write_curriculum(tmp_path)
    res = run_mindprint("sft", "--backend", backend, "--model", str(tiny_model_dir), "--quantize", "4", "--data",
                        str(data / "sft_data.jsonl"), "--set", "sft.max_steps=2", "-o", str(tmp_path / "runs"))
    assert res.returncode == 0, res.stderr
    config = (only_run_dir(tmp_path / "runs") / "config.yaml").read_text()
    assert "quantization:" in config and "bits: 4" in config


def test_backend_specific_field_is_named(tmp_path: Path, tiny_model_dir: Path) -> None:
    data = write_curriculum(tmp_path)
    res = run_mindprint("sft", "--backend", "mlx", "--model", str(tiny_model_dir), "--quantize", "4", "--set",
                        "model.quantization.mode=nf4", "--data", str(data / "sft_data.jsonl"),
                        "-o", str(tmp_path / "runs"))
    assert res.returncode != 0
    assert "quantization.mode" in res.stderr
