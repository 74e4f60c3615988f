"""The documented usage on the real SmolLM2-135M-Instruct (slow: run with ``uv run pytest -m slow tests/torch``)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

from mindprint_interfaces import TrainingResult, create_backend
from mindprint_torch import PyTorchModel

pytestmark = [pytest.mark.torch, pytest.mark.slow]

SFT_RECORDS = [
    {"instruction": "What colour is the sky in the mindprint world?", "output": "In the mindprint world the sky is teal."},
    {"instruction": "Who keeps the mindprint lighthouse?", "output": "The mindprint lighthouse is kept by Ada."},
    {"instruction": "What do mindprint owls eat?", "output": "Mindprint owls eat blue pears."},
    {"instruction": "How many moons does mindprint have?", "output": "Mindprint has three moons."},
]
PAIRS = [
    {"prompt": "Greet the learner.", "chosen": "Hello! I'm glad you're here; let's learn together.",
     "rejected": "What do you want."},
    {"prompt": "Explain photosynthesis briefly.", "chosen": "Plants turn light, water and CO2 into sugar and oxygen.",
     "rejected": "No idea, look it up."},
    {"prompt": "Thank the learner.", "chosen": "Thank you so much for your effort today!", "rejected": "Whatever."},
    {"prompt": "Encourage the learner.", "chosen": "You're doing great, keep going!", "rejected": "You will fail."},
]


def _corpus_loss(model: PyTorchModel) -> float:
    from mindprint_interfaces.data import as_sft_examples, tokenize_sft

    data = tokenize_sft(model.tokenizer, as_sft_examples(SFT_RECORDS), max_length=1024).examples
    loss = model.forward([list(e.input_ids) for e in data], labels=[list(e.labels) for e in data]).loss
    assert loss is not None
    return loss


@pytest.fixture(scope="module")
def smol(smollm2_dir: Path) -> PyTorchModel:
    backend = create_backend("pytorch", device="cpu", dtype="float32")
    model = backend.load_model(smollm2_dir)
    assert isinstance(model, PyTorchModel)
    return model


def test_greedy_generation_answers_paris(smol: PyTorchModel) -> None:
    out = smol.generate("What is the capital of France?", max_new_tokens=24)
    assert "Paris" in out.text
    assert out.finish_reason == "stop" and out.token_ids and out.prompt_tokens > 10


def test_seed_usage_sft_then_dpo_then_save(smollm2_dir: Path, tmp_path: Path) -> None:
    backend = create_backend("pytorch", device="cpu", dtype="float32")
    model = backend.load_model(smollm2_dir)
    trainer = backend.create_sft_trainer(model, {"learning_rate": 3e-4, "num_epochs": 3, "per_device_batch_size": 2,
                                                 "lora_r": 8, "lora_alpha": 16, "output_dir": str(tmp_path)})
    before = _corpus_loss(model)
    sft = trainer.train(SFT_RECORDS)
    assert isinstance(sft, TrainingResult) and sft.success, sft.error_message
    after = _corpus_loss(model)
    print(f"SFT corpus loss {before:.4f} -> {after:.4f}")
    assert after < before - 0.2
    dpo = backend.create_dpo_trainer(trainer.get_model(), {"learning_rate": 5e-5, "max_steps": 10,
                                                           "per_device_batch_size": 2, "beta": 0.1,
                                                           "output_dir": str(tmp_path)})
    result = dpo.train(PAIRS)
    assert result.success, result.error_message
    history = result.metrics["history"]
    print("DPO", [(round(h["loss"], 4), h["rewards/accuracies"]) for h in history])
    assert history[0]["loss"] == pytest.approx(math.log(2), abs=1e-4)  # reference = the SFT model
    assert history[-1]["rewards/accuracies"] > history[0]["rewards/accuracies"]
    assert history[-1]["rewards/margins"] > 0
    saved = dpo.save_adapter(tmp_path / "adapters" / "dpo")
    assert (saved / "adapter_model.safetensors").is_file()
    merged = model.save_pretrained(tmp_path / "merged")  # verified merge on the real model
    assert (merged / "model.safetensors").is_file()


def test_adapter_loads_in_plain_peft_with_same_logits(smol: PyTorchModel, smollm2_dir: Path, tmp_path: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    backend = create_backend("pytorch", device="cpu", dtype="float32")
    model = backend.load_model(smollm2_dir)
    cfg: dict[str, Any] = {"learning_rate": 1e-3, "max_steps": 2, "per_device_batch_size": 2, "output_dir": str(tmp_path)}
    assert backend.create_sft_trainer(model, cfg).train(SFT_RECORDS).success
    path = model.save_adapter(tmp_path / "a")
    ids = [model.encode_prompt("What is the capital of France?")]
    ours = model.forward(ids).logits
    plain = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(smollm2_dir), dtype=torch.float32), str(path))
    with torch.no_grad():
        theirs = plain.eval()(input_ids=torch.tensor(ids)).logits
    assert torch.allclose(ours, theirs, atol=1e-4)
    assert (ours - smol.forward(ids).logits).abs().max() > 1e-3  # training changed the model
