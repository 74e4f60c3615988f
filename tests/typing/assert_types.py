"""Checked by mypy (tests/typing/test_mypy.py), never executed: the public API's static types."""

from __future__ import annotations

from pathlib import Path
from typing import assert_type

from mindprint_interfaces import (
    Backend,
    DPOConfig,
    Generation,
    Model,
    SFTConfig,
    Trainer,
    TrainingResult,
    create_backend,
)
from mindprint_interfaces.data import TokenizedData, TokenizedExample, parse_sft_records, tokenize_sft


def _api(records: list[dict[str, str]]) -> None:
    backend = create_backend("pytorch", device="cpu", dtype="float32")
    assert_type(backend, Backend)
    model = backend.load_model("model-dir")
    assert_type(model, Model)
    assert_type(model.generate("Hello"), Generation)
    assert_type(model.sequence_logprobs([[1]], [[2]]), list[float])
    trainer = backend.create_sft_trainer(model, {"learning_rate": 3e-4})
    assert_type(trainer, Trainer)
    assert_type(trainer.train(records), TrainingResult)
    dpo = backend.create_dpo_trainer(trainer.get_model(), DPOConfig(beta=0.1))
    assert_type(dpo.save_adapter(Path("adapters/dpo")), Path)
    assert_type(SFTConfig.from_dict({"lr": 1e-4}), SFTConfig)
    assert_type(DPOConfig.coerce(None), DPOConfig)
    data = tokenize_sft(model.tokenizer, parse_sft_records(records), max_length=128)
    assert_type(data, TokenizedData[TokenizedExample])
