from __future__ import annotations

import json
from pathlib import Path

import pytest

from mindprint_pipeline import (
    AttemptResult,
    ChapterProgress,
    CheckpointError,
    PipelineResult,
    PipelineState,
    TopicProgress,
    UnitProgress,
    load_state,
    save_state,
)
from mindprint_pipeline.checkpoint import check_compatible, state_path


def _topic(tid: str, status: str, score: float) -> TopicProgress:
    t = TopicProgress(tid, 0, status=status, attempts=2, accuracy=score, voice=score, score=score,  # type: ignore[arg-type]
                      adapter_path="/a", time_seconds=1.5)
    t.history = [AttemptResult(0, 42, sft_loss=1.0, accuracy=0.1), AttemptResult(1, 43, sft_loss=0.5, passed=True)]
    return t


def _result() -> PipelineResult:
    u1 = UnitProgress("u1", [ChapterProgress("u1", "c1", [_topic("u1/c1/a", "passed", 0.95),
                                                          _topic("u1/c1/b", "failed", 0.4)])], "/merged/u1", 3.0)
    u2 = UnitProgress("u2", [ChapterProgress("u2", "c1", [_topic("u2/c1/a", "pending", 0.0)])])
    return PipelineResult([u1, u2], 7.0, completed=False, final_model_path="/merged/u1", backend="pytorch")


def test_aggregates() -> None:
    r = _result()
    assert r.total_topics == 3
    assert r.passed_topics == ["u1/c1/a"]
    assert r.failed_topics == ["u1/c1/b"]
    assert r.pending_topics == ["u2/c1/a"]
    assert r.pass_rate == 0.5  # over finished topics
    assert not r.success
    u1 = r.units[0]
    assert (u1.passed, u1.failed, u1.pass_rate, u1.completed) == (1, 1, 0.5, True)
    assert not r.units[1].completed
    assert r.topic("u1/c1/b").retries == 1
    assert "1/2 topics passed" in r.summary()


def test_json_round_trip() -> None:
    r = _result()
    data = json.loads(json.dumps(r.to_dict()))
    assert data["failed_topics"] == ["u1/c1/b"]
    back = PipelineResult.from_dict(data)
    assert back == r
    assert back.topics[0].history[1].passed


def test_state_save_load_atomic(tmp_path: Path) -> None:
    state = PipelineState("fp", {"seed": 1}, "/base", "/adapter", {"u1/c1/a": _topic("u1/c1/a", "passed", 0.9)},
                          {"u1": "/m"}, {"u1": 2.0}, 5.0, "mlx")
    save_state(tmp_path, state)
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]  # no temp files left behind
    assert load_state(tmp_path) == state
    assert load_state(tmp_path / "none") is None


def test_state_errors(tmp_path: Path) -> None:
    state_path(tmp_path).write_text("{broken")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_state(tmp_path)
    state_path(tmp_path).write_text(json.dumps({"version": 99}))
    with pytest.raises(CheckpointError, match="version"):
        load_state(tmp_path)
    state_path(tmp_path).write_text(json.dumps({"version": 1}))
    with pytest.raises(CheckpointError, match="malformed"):
        load_state(tmp_path)


def test_check_compatible() -> None:
    state = PipelineState("fp", {"seed": 1, "lora_r": 8}, "/base")
    check_compatible(state, fingerprint="fp", config={"seed": 1, "lora_r": 8}, source="ck")
    with pytest.raises(CheckpointError, match="different training data"):
        check_compatible(state, fingerprint="other", config={"seed": 1, "lora_r": 8}, source="ck")
    with pytest.raises(CheckpointError, match="lora_r: 8 -> 4"):
        check_compatible(state, fingerprint="fp", config={"seed": 1, "lora_r": 4}, source="ck")
