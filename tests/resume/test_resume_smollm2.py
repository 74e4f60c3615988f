"""Cross-backend resume on SmolLM2-135M (slow): steps 1-2 on one backend, 3-4 on the other, against 4 steps on
the second backend from the same PEFT-written random adapter; parity tolerance of tests/parity on SmolLM2
(2e-3 relative, 3e-4 absolute)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mindprint_interfaces.testing import SFT_RECORDS

from ..random_adapter import write_peft_random_adapter
from .common import backend, run

pytestmark = [pytest.mark.torch, pytest.mark.mlx, pytest.mark.slow]


@pytest.mark.parametrize(("first", "second"), [("mlx", "pytorch"), ("pytorch", "mlx")])
def test_cross_backend_resume_smollm2(first: str, second: str, smollm2_dir: Path, tmp_path: Path) -> None:
    init = tmp_path / "init"
    write_peft_random_adapter(smollm2_dir, init)
    cfg: dict[str, Any] = {"learning_rate": 1e-3, "max_steps": 4, "per_device_batch_size": 2,
                           "gradient_accumulation_steps": 2, "save_steps": 2, "warmup_steps": 1, "max_length": 128,
                           "seed": 3, "output_dir": str(tmp_path / "a")}
    _, reference = run(backend(second), smollm2_dir, {**cfg, "save_steps": 0, "output_dir": str(tmp_path / "ref")},
                       adapter_path=init, records=SFT_RECORDS)
    _, head = run(backend(first), smollm2_dir, cfg, adapter_path=init, records=SFT_RECORDS)
    _, tail = run(backend(second), smollm2_dir, {**cfg, "output_dir": str(tmp_path / "b")},
                  resume=tmp_path / "a" / "checkpoint-2", records=SFT_RECORDS)
    expected = [reference.steps[s]["loss"] for s in (1, 2, 3, 4)]
    got = [head.steps[1]["loss"], head.steps[2]["loss"], tail.steps[3]["loss"], tail.steps[4]["loss"]]
    print(f"{first}->{second}: resumed {got} vs {second} {expected}")
    assert got == pytest.approx(expected, rel=2e-3, abs=3e-4)
