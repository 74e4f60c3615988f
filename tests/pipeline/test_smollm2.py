"""The real model: SmolLM2-135M-Instruct through a 2-unit x 2-topic curriculum (slow)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from mindprint_interfaces import Backend
from mindprint_interfaces.data import Message
from mindprint_pipeline import DPOPipeline, PipelineConfig

from .conftest import BACKENDS, DATA, Recorder, make_backend


@pytest.mark.slow
@pytest.mark.parametrize("backend_name", BACKENDS)
def test_smollm2_curriculum(backend_name: str, smollm2_dir: Path, tmp_path: Path) -> None:
    backend: Backend = make_backend(backend_name)
    cfg = PipelineConfig.from_dict(dict(
        model_path=str(smollm2_dir), data_dir=str(DATA), output_dir=str(tmp_path / "out"), device="cpu",
        markers_file="markers.json", sft_epochs_per_topic=2, sft_learning_rate=2e-4, sft_batch_size=4,
        sft_max_length=128, dpo_steps_per_topic=2, dpo_batch_size=1, dpo_learning_rate=5e-6,
        eval_max_new_tokens=24, eval_max_records=2, max_retries_per_topic=0,
        # the settings this test was tuned with (they were the pipeline's defaults then)
        accuracy_threshold=0.70, dpo_trigger_threshold=0.75, topic_pass_threshold=0.90,
    ))
    rec = Recorder()
    started = time.monotonic()
    result = DPOPipeline(config=cfg, backend=backend, callbacks=[rec]).train_curriculum()
    print(f"\n{backend_name}: {time.monotonic() - started:.0f}s\n{result.summary()}")
    assert result.completed
    assert [u.unit for u in result.units] == ["geography", "science"]
    assert all(t.status in ("passed", "failed") and t.sft_loss is not None for t in result.topics)
    # an instruct model fine-tuned on its answers overlaps the references well on at least some topics
    assert max(t.accuracy for t in result.topics) > 0.3
    for unit in result.units:
        assert unit.merged_model_path and (Path(unit.merged_model_path) / "config.json").is_file()
    final = backend.load_model(result.final_model_path or "")
    answer = final.generate([Message(role="user", content="What is the capital of France?")], max_new_tokens=16)
    assert answer.text.strip()
    assert len(rec.kinds("unit")) == 2
