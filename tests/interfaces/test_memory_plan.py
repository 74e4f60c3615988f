"""The memory planner's arithmetic (stdlib) and the ``mindprint plan`` command."""

from __future__ import annotations

from pathlib import Path

import pytest

from mindprint_interfaces.memory_plan import GIB, ModelShape, PlanRequest, parse_memory, predict

QWEN_7B = {"hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28, "num_attention_heads": 28,
           "num_key_value_heads": 4, "vocab_size": 152064, "tie_word_embeddings": False}


def test_parameter_count_matches_the_published_size() -> None:
    assert ModelShape.from_config(QWEN_7B).params == pytest.approx(7.6e9, rel=0.01)  # Qwen2.5-7B: 7.61B


def test_each_setting_moves_the_part_it_should() -> None:
    shape = ModelShape.from_config(QWEN_7B)
    base = predict(shape, PlanRequest())
    q4 = predict(shape, PlanRequest(quantize_bits=4))
    gc = predict(shape, PlanRequest(gradient_checkpointing=True))
    dpo = predict(shape, PlanRequest(method="dpo"))
    assert q4.parts["base weights (quantized linears)"] == pytest.approx(base.parts["base weights"] * 4.5 / 16,
                                                                         rel=0.12)
    assert gc.parts["activations (checkpointed)"] < base.parts["activations"] / 10
    assert dpo.parts["logits + loss (fp32)"] == 2 * base.parts["logits + loss (fp32)"]
    assert predict(shape, PlanRequest(max_length=1024)).total < base.total


def test_parse_memory() -> None:
    assert parse_memory("64GB") == 64 * GIB and parse_memory("512MiB") == 512 * 1024 ** 2


def test_plan_command(tiny_model_dir: Path) -> None:
    from tests.trainer.helpers import run_mindprint

    res = run_mindprint("plan", "--model", "Qwen/Qwen2.5-7B-Instruct", "--memory", "64GB")
    assert res.returncode == 1 and "does NOT fit" in res.stdout and "--gradient-checkpointing" in res.stdout
    res = run_mindprint("plan", "--model", str(tiny_model_dir), "--max-length", "128", "--batch", "1")
    assert res.returncode == 0 and "fits" in res.stdout, res.stdout + res.stderr


def test_predictions_stay_within_the_stated_error_of_the_measured_peaks() -> None:
    """The planner against every stored measurement (``benchmarks/memory_plan.json``, written by
    ``tools/plan_calibrate.py``): a planner change that moves a prediction out of the band fails here. The band is
    the one the README states; the measurements are real load + one-step peaks, not refitted by this test."""
    import json

    from tools.plan_calibrate import ROOT, table_row

    store = json.loads((ROOT / "benchmarks" / "memory_plan.json").read_text(encoding="utf-8"))
    assert {e["dtype"] for e in store.values()} >= {"float32", "bfloat16"}
    assert {e["backend"] for e in store.values()} == {"pytorch", "mlx"}
    errors = {key: table_row(entry)[7] for key, entry in store.items()}
    assert max(abs(e) for e in errors.values()) <= 0.15, {k: round(e, 3) for k, e in errors.items() if abs(e) > 0.15}


def test_quantizing_on_load_counts_when_it_holds_more_than_training() -> None:
    """mlx-lm quantizing a full-precision checkpoint holds the whole model first (measured: 1.91 GiB load peak
    against 0.72 GiB training for the Qwen2.5-0.5B shape in fp32 at 128 tokens); the fit is decided on it."""
    from mindprint_interfaces.memory_plan import KNOWN_SHAPES, human

    shape = ModelShape.from_config(KNOWN_SHAPES["Qwen/Qwen2.5-0.5B-Instruct"])
    short = PlanRequest(max_length=128, batch=1, dtype="float32", backend="mlx", quantize_bits=4)
    plan = predict(shape, short)
    assert plan.load == shape.params * 4 > plan.total and plan.peak == plan.load
    assert ("loading (quantizing on load)", human(plan.load)) in plan.table()
    torch_plan = predict(shape, PlanRequest(max_length=128, batch=1, dtype="float32", backend="pytorch",
                                            quantize_bits=4))
    assert torch_plan.peak == torch_plan.total  # bitsandbytes quantizes tensor by tensor
