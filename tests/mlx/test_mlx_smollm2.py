"""The real SmolLM2-135M-Instruct (slow: `uv run pytest -m slow tests/mlx`). Kept small: the mlx-cpu wheel's
bundled reference BLAS is slow; with OpenBLAS installed mindprint-mlx uses it (see the package README)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mindprint_interfaces.data import as_sft_examples, tokenize_sft

pytestmark = [pytest.mark.mlx, pytest.mark.slow]

SFT = [{"instruction": "What is the capital of France?", "output": "The capital of France is Paris."},
       {"instruction": "What is two plus two?", "output": "Two plus two is four."}]
PAIRS = [{"prompt": "What is the capital of France?", "chosen": "Paris.", "rejected": "London, of course."},
         {"prompt": "What is two plus two?", "chosen": "Four.", "rejected": "Five, I think."}]


@pytest.fixture(scope="module")
def smol_hf(smollm2_dir: Path) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(smollm2_dir), dtype=torch.float32)
    model.eval()
    return model


@pytest.fixture
def smol(backend: Any, smollm2_dir: Path) -> Any:
    return backend.load_model(smollm2_dir)


def test_logits_and_greedy_generation_match_transformers(smol: Any, smol_hf: Any) -> None:
    import torch

    ids = smol.prompt_ids("What is the capital of France?")
    ours = np.array(smol.forward([ids]).logits)
    with torch.no_grad():
        theirs = smol_hf(torch.tensor([ids])).logits.numpy()
    assert np.abs(ours - theirs).max() < 2e-3
    gen = smol.generate(ids, max_new_tokens=8)
    with torch.no_grad():
        out = smol_hf.generate(torch.tensor([ids]), max_new_tokens=len(gen.token_ids), do_sample=False)
    assert tuple(out[0, len(ids):].tolist()) == gen.token_ids
    assert "Paris" in gen.text


def test_sft_lowers_loss(backend: Any, smol: Any, tmp_path: Path) -> None:
    tok = tokenize_sft(smol.tokenizer, as_sft_examples(SFT), max_length=128).examples

    def loss() -> float:
        return float(smol.forward([e.input_ids for e in tok], labels=[e.labels for e in tok]).loss)

    before = loss()
    result = backend.create_sft_trainer(smol, {"learning_rate": 1e-3, "max_steps": 3, "per_device_batch_size": 2,
                                               "output_dir": str(tmp_path)}).train(SFT)
    assert result.success, result.error_message
    assert loss() < before - 0.1


def test_dpo_step0_and_accuracies(backend: Any, smol: Any, tmp_path: Path) -> None:
    result = backend.create_dpo_trainer(smol, {"learning_rate": 1e-3, "max_steps": 3, "per_device_batch_size": 2,
                                               "beta": 0.1, "output_dir": str(tmp_path)}).train(PAIRS)
    assert result.success, result.error_message
    hist = result.metrics["history"]
    assert hist[0]["loss"] == pytest.approx(math.log(2), rel=1e-5)
    assert hist[0]["rewards/accuracies"] == 0.0
    assert hist[-1]["rewards/accuracies"] == 1.0
    assert hist[-1]["loss"] < math.log(2)
