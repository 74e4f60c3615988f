"""QLoRA on the real model (#17 "Done when"): on SmolLM2, a 4-bit base on each backend runs SFT -> DPO ->
save -> reload -> keep training -> verified merge, and the adapter trained on torch's NF4 base loads on MLX.

The tiny-model versions of the same path are fast tests (tests/torch/test_torch_qlora.py,
tests/mlx/test_mlx_qlora.py); here the quantization error and the training signal are the real model's.
The figures (4-bit vs full-precision gap, reload and merge gaps) are printed for the README.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mindprint_interfaces import create_backend

from ..conformance.suite import PREFERENCES, SFT_RECORDS

pytestmark = [pytest.mark.torch, pytest.mark.mlx, pytest.mark.slow]

QUANT = {"pytorch": {"bits": 4}, "mlx": {"bits": 4, "group_size": 64}}
COMMON = {"per_device_batch_size": 2, "seed": 42}


def _probe(model: Any) -> list[float]:
    tok = model.tokenizer
    prompts = [tok.encode("The capital of France is"), tok.encode("Water boils at")]
    completions = [tok.encode(" Paris, a city on the Seine."), tok.encode(" one hundred degrees Celsius.")]
    return list(model.sequence_logprobs(prompts, completions))


def _gap(a: list[float], b: list[float]) -> float:
    return max(abs(x - y) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("backend_name", ["pytorch", "mlx"])
def test_qlora_sft_dpo_save_reload_continue_merge(backend_name: str, smollm2_dir: Path, tmp_path: Path) -> None:
    backend = create_backend(backend_name, device="cpu", seed=42)
    q4 = QUANT[backend_name]
    full = _probe(backend.load_model(smollm2_dir))
    model = backend.load_model(smollm2_dir, quantization=q4)
    assert model.quantization is not None
    base = _probe(model)
    quant_gap = _gap(base, full)

    out = {"output_dir": str(tmp_path / "o")}
    sft = backend.create_trainer("sft", model, {"max_steps": 6, "learning_rate": 2e-3, **COMMON, **out})
    res = sft.train(SFT_RECORDS, adapter_dir=tmp_path / "sft")
    assert res.success, res.error_message
    losses = [h["loss"] for h in res.metrics["history"]]
    assert losses[-1] < losses[0], losses
    dpo = backend.create_trainer("dpo", model, {"max_steps": 3, "learning_rate": 1e-3, **COMMON, **out})
    res = dpo.train(PREFERENCES, adapter_dir=tmp_path / "dpo")
    assert res.success, res.error_message
    trained = _probe(model)
    moved = _gap(trained, base)
    assert moved > 1e-2  # the adapter changed what the quantized model says

    reloaded = backend.load_model(smollm2_dir, quantization=q4, adapter_path=tmp_path / "dpo")
    reload_gap = _gap(_probe(reloaded), trained)
    tol = 2e-4 * max(abs(v) for v in trained)  # bitsandbytes' live vs freshly quantized layers (see the tiny test)
    assert reload_gap < tol
    more = backend.create_trainer("sft", reloaded, {"max_steps": 2, "learning_rate": 2e-3, **COMMON, **out})
    assert more.train(SFT_RECORDS, adapter_dir=tmp_path / "more").success
    assert _gap(_probe(reloaded), trained) > 1e-3  # kept training on the quantized base

    merged = backend.load_model(model.save_pretrained(tmp_path / "merged"))  # dequantized + merged, verified inside
    assert merged.quantization is None
    merge_gap = _gap(_probe(merged), trained)
    assert merge_gap < tol
    print(f"{backend_name}: 4-bit vs full {quant_gap:.3e}, trained moved {moved:.3e}, reload {reload_gap:.2e}, "
          f"merge {merge_gap:.2e} (nats, sequence log-probs)")


def test_torch_nf4_adapter_on_mlx(smollm2_dir: Path, tmp_path: Path) -> None:
    """The adapter trained on torch's NF4 base, loaded by MLX over the full-precision base and over MLX's own
    4-bit base: the gaps to torch's trained model are printed; over full precision it is the quantization
    error of the base alone (the adapter itself is exact)."""
    torch_backend = create_backend("pytorch", device="cpu", seed=42)
    model = torch_backend.load_model(smollm2_dir, quantization=QUANT["pytorch"])
    res = torch_backend.create_trainer("sft", model, {"max_steps": 4, "learning_rate": 2e-3, **COMMON,
                                                      "output_dir": str(tmp_path / "o")}).train(
        SFT_RECORDS, adapter_dir=tmp_path / "a")
    assert res.success, res.error_message
    trained_nf4 = _probe(model)
    torch_full = _probe(torch_backend.load_model(smollm2_dir, adapter_path=tmp_path / "a"))

    mlx_backend = create_backend("mlx", device="cpu", seed=42)
    mlx_full = _probe(mlx_backend.load_model(smollm2_dir, adapter_path=tmp_path / "a"))
    mlx_q4 = _probe(mlx_backend.load_model(smollm2_dir, quantization=QUANT["mlx"], adapter_path=tmp_path / "a"))
    across_full = _gap(mlx_full, torch_full)
    print(f"torch NF4 adapter: MLX full vs torch full {across_full:.2e}; MLX full vs torch NF4 "
          f"{_gap(mlx_full, trained_nf4):.3e}; MLX 4-bit vs torch NF4 {_gap(mlx_q4, trained_nf4):.3e}")
    assert across_full < 1e-3  # the same adapter on the same full-precision base: backend parity
