"""Fixtures for the pipeline tests: the bundled 2-unit x 2-topic curriculum, backends, test doubles."""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from mindprint_interfaces import Backend, BackendNotFoundError, Model, create_backend
from mindprint_pipeline import BasePipelineCallback, PipelineConfig, TopicProgress, UnitProgress

DATA = Path(__file__).resolve().parent / "data"
BACKENDS = [pytest.param("pytorch", marks=pytest.mark.torch), pytest.param("mlx", marks=pytest.mark.mlx)]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A copy of tests/pipeline/data (sft_data.jsonl, preference_data.jsonl, markers.json)."""
    dst = tmp_path / "data"
    shutil.copytree(DATA, dst)
    return dst


def make_backend(name: str) -> Backend:
    try:
        return create_backend(name, device="cpu")
    except (BackendNotFoundError, ImportError) as exc:
        pytest.skip(f"{name} backend not available: {exc}")


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Backend:
    return make_backend(request.param)


def fast_config(model_dir: Path, out: Path, **overrides: Any) -> PipelineConfig:
    """Small, quick settings for the tiny random model (each topic trains a few steps)."""
    settings: dict[str, Any] = {
        "model_path": str(model_dir), "data_dir": str(DATA), "output_dir": str(out), "device": "cpu",
        "markers_file": str(DATA / "markers.json"),
        "sft_epochs_per_topic": 1, "sft_batch_size": 4, "sft_learning_rate": 1e-2, "sft_max_length": 64,
        "dpo_steps_per_topic": 1, "dpo_batch_size": 2, "dpo_learning_rate": 1e-3,
        "lora_r": 4, "lora_alpha": 8, "eval_max_new_tokens": 4, "eval_max_records": 1, "max_retries_per_topic": 0,
        "accuracy_threshold": 0.0,  # the random model scores ~0: let DPO run (voice < 0.75)
        "dpo_trigger_threshold": 0.75, "topic_pass_threshold": 0.90,  # the branch tests' scripted scores assume these
    }
    settings.update(overrides)
    return PipelineConfig.from_dict(settings)


class ScriptedEvaluator:
    """Test double of the pipeline's Evaluator protocol: returns scripted scores per topic, in call order.

    It still generates one answer through ``Model.generate`` so the model it receives is exercised.
    """

    def __init__(self, script: Mapping[str, Sequence[tuple[float, float]]], default: tuple[float, float] = (1.0, 1.0)):
        self.script = {k: list(v) for k, v in script.items()}
        self.default = default
        self.calls: list[str] = []

    def evaluate(self, model: Model, records: Sequence[Mapping[str, Any]]) -> dict[str, float]:
        topic = str(records[0]["topic_id"])
        self.calls.append(topic)
        model.generate(records[0]["messages"][:1], max_new_tokens=2)
        queue = self.script.get(topic)
        accuracy, voice = queue.pop(0) if queue else self.default
        return {"accuracy": accuracy, "voice": voice}


class Recorder(BasePipelineCallback):
    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def on_topic_start(self, topic_id: str, attempt: int) -> None:
        self.events.append(("start", topic_id, attempt))

    def on_step(self, stage: str, topic_id: str, step: int, metrics: Mapping[str, float]) -> None:
        self.events.append(("step", stage, topic_id, step, dict(metrics)))

    def on_topic_end(self, progress: TopicProgress) -> None:
        self.events.append(("end", progress.topic_id, progress.status))

    def on_unit_end(self, progress: UnitProgress) -> None:
        self.events.append(("unit", progress.unit, progress.merged_model_path))

    def kinds(self, kind: str) -> list[tuple[Any, ...]]:
        return [e for e in self.events if e[0] == kind]

    def steps(self, stage: str, topic_id: str) -> list[dict[str, float]]:
        return [e[4] for e in self.events if e[0] == "step" and e[1] == stage and e[2] == topic_id]
