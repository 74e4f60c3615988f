"""The whole curriculum flow on the tiny random model, on every installed backend."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from mindprint_interfaces import Backend
from mindprint_pipeline import DPOPipeline, PipelineResult, load_state

from .conftest import Recorder, fast_config

TOPICS = ["geography/europe/capitals", "geography/europe/curriculum",
          "science/biology/photosynthesis", "science/math/addition"]


@pytest.fixture(scope="module")
def full_run(backend: Backend, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
             ) -> tuple[PipelineResult, Recorder, Path, float]:
    out = tmp_path_factory.mktemp(f"full-{backend.name}")
    rec = Recorder()
    started = time.monotonic()
    result = DPOPipeline(config=fast_config(tiny_model_dir, out), backend=backend, callbacks=[rec]).train_curriculum()
    return result, rec, out, time.monotonic() - started


def test_full_flow(full_run: tuple[PipelineResult, Recorder, Path, float], backend: Backend) -> None:
    result, rec, out, seconds = full_run
    print(f"{backend.name}: full 4-topic run in {seconds:.1f}s")
    assert result.completed and result.backend == backend.name
    assert [t.topic_id for t in result.topics] == TOPICS
    assert [u.unit for u in result.units] == ["geography", "science"]
    for t in result.topics:
        assert t.status in ("passed", "failed")
        assert t.attempts == 1 and len(t.history) == 1
        assert 0.0 <= t.accuracy <= 1.0 and 0.0 <= t.voice <= 1.0
        assert t.score == pytest.approx((t.accuracy + t.voice) / 2)
        assert t.dpo_applied  # accuracy >= 0.0 and voice < 0.75 on a random model; every topic has pairs
        assert t.sft_loss is not None and t.dpo_loss is not None
        assert t.adapter_path and Path(t.adapter_path).is_dir()
        assert t.history[0].metrics["voice_measured"] == 1.0
    assert result.failed_topics == [t.topic_id for t in result.topics if not t.passed]
    assert result.pass_rate == len(result.passed_topics) / 4
    # merged after every unit; the last unit's merge is the final model
    for unit in result.units:
        assert unit.merged_model_path == str(out / "merged" / unit.unit)
        assert (Path(unit.merged_model_path) / "config.json").is_file()
    assert result.final_model_path == str(out / "merged" / "science")
    assert result.final_adapter_path is None
    # the unmatched preference pair is reported
    assert [p["prompt"] for p in result.unmatched_preferences] == ["Who wrote Hamlet?"]
    # checkpoint and result file
    state = load_state(out / "checkpoints")
    assert state is not None and sorted(state.topics) == sorted(TOPICS)
    assert state.merged_units == {"geography": str(out / "merged" / "geography"),
                                  "science": str(out / "merged" / "science")}
    saved = json.loads((out / "pipeline_result.json").read_text())
    assert PipelineResult.from_dict(saved).topics == result.topics
    # callbacks: starts, training steps of both stages, ends, units
    assert [e[1] for e in rec.kinds("start")] == TOPICS
    assert [e[1] for e in rec.kinds("end")] == TOPICS
    assert [e[1] for e in rec.kinds("unit")] == ["geography", "science"]
    for topic in TOPICS:
        assert rec.steps("sft", topic) and "loss" in rec.steps("sft", topic)[0]
        assert len(rec.steps("dpo", topic)) == 1
    assert rec.events.index(("unit", "geography", str(out / "merged" / "geography"))) < \
        rec.events.index(("start", TOPICS[2], 0))


def test_resume_gives_the_same_result(full_run: tuple[PipelineResult, Recorder, Path, float], backend: Backend,
                                      tiny_model_dir: Path, tmp_path: Path) -> None:
    uninterrupted = full_run[0]
    cfg = fast_config(tiny_model_dir, tmp_path / "out")
    first = DPOPipeline(config=cfg, backend=backend).train_curriculum(stop_after_topics=2)
    assert not first.completed
    assert first.pending_topics == TOPICS[2:]
    state = load_state(cfg.checkpoint_path)
    assert state is not None and sorted(state.topics) == TOPICS[:2]
    assert state.merged_units == {}  # stopped right after topic 2, before the unit merge

    rec = Recorder()
    resumed = DPOPipeline(config=cfg, backend=backend, callbacks=[rec]).train_curriculum(resume=True)
    assert resumed.completed
    assert [e[1] for e in rec.kinds("start")] == TOPICS[2:]  # completed topics are skipped
    assert [e[1] for e in rec.kinds("unit")] == ["geography", "science"]  # the pending merge is done first
    assert resumed.total_time_seconds >= first.total_time_seconds
    for a, b in zip(uninterrupted.topics, resumed.topics, strict=True):
        assert (a.topic_id, a.status, a.attempts, a.dpo_applied) == (b.topic_id, b.status, b.attempts, b.dpo_applied)
    for a, b in zip(uninterrupted.topics, resumed.topics):
        assert a.accuracy == pytest.approx(b.accuracy, abs=1e-6), a.topic_id
        assert a.voice == pytest.approx(b.voice, abs=1e-6), a.topic_id
        assert a.sft_loss == pytest.approx(b.sft_loss, rel=1e-4), a.topic_id
        assert a.dpo_loss == pytest.approx(b.dpo_loss, rel=1e-4), a.topic_id


def test_a_loaded_curriculum_is_taken_as_is_and_not_with_data(backend: Backend, tiny_model_dir: Path,
                                                                tmp_path: Path) -> None:
    """``train_curriculum(curriculum=...)`` trains what :meth:`load_data` read; data passed beside it is refused."""
    from mindprint_interfaces import ConfigError

    pipeline = DPOPipeline(config=fast_config(tiny_model_dir, tmp_path / "out"), backend=backend)
    curriculum = pipeline.load_data()
    with pytest.raises(ConfigError, match="either the data or a loaded curriculum"):
        pipeline.train_curriculum(str(tmp_path / "other.jsonl"), curriculum=curriculum)
    result = pipeline.train_curriculum(curriculum=curriculum, stop_after_topics=1)
    assert not result.completed and result.pending_topics == [t.id for t in curriculum.topics[1:]]
