"""Curriculum resume inside a topic (#18): an interrupted stage continues from its newest step checkpoint.

One unit, two topics, SFT (3 steps) and DPO (3 steps, reference: initial_policy) per topic, a step checkpoint
after every step. A callback stops the run inside topic 2's SFT or inside topic 1's DPO; ``resume=True`` then
continues that stage (same attempt, same stage) from its newest checkpoint. Same backend: the resumed run
equals the uninterrupted one bitwise (every later loss with ``==``, the final adapter ``array_equal``; the
finished SFT of topic 1 is not trained again). Across backends (stopped on one, resumed on the other) the
later losses stay within the parity tolerance (tests/parity) of an uninterrupted run on the second backend.
A SIGKILL inside topic 1's DPO (in a child process, MLX; marked slow) is resumed the same way.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mindprint_interfaces import Backend
from mindprint_interfaces.checkpoint_layout import checkpoint_root, step_checkpoints
from mindprint_kit.adapter_files import read_adapter
from mindprint_pipeline import DPOPipeline, PipelineConfig, PipelineInterrupted
from mindprint_pipeline.checkpoint import load_state

from .conftest import DATA, Recorder, make_backend

pytestmark = [pytest.mark.torch, pytest.mark.mlx]

T1, T2 = "u/c/t1", "u/c/t2"
SFT = [{"instruction": f"Question {i} about {t}?", "output": f"Answer {i} about {t}, kindly.", "topic_id": topic}
       for topic, t in ((T1, "rivers"), (T2, "hills")) for i in range(3)]
PAIRS = [{"prompt": f"Question {i} about {t}?", "chosen": f"Answer {i}, kindly.", "rejected": "No.", "topic_id": topic}
         for topic, t in ((T1, "rivers"), (T2, "hills")) for i in range(3)]
WORKER = Path(__file__).with_name("stage_resume_worker.py")


def settings(model_dir: Path, out: Path) -> dict[str, Any]:
    return {
        "model_path": str(model_dir), "data_dir": str(DATA), "output_dir": str(out), "device": "cpu",
        "markers_file": str(DATA / "markers.json"), "merge_after_unit": False,
        "sft_epochs_per_topic": 1, "sft_batch_size": 1, "sft_learning_rate": 1e-3, "sft_max_length": 64,
        "dpo_steps_per_topic": 3, "dpo_batch_size": 1, "dpo_learning_rate": 1e-3,
        "sft": {"save_steps": 1}, "dpo": {"save_steps": 1},
        "lora_r": 4, "lora_alpha": 8, "eval_max_new_tokens": 2, "eval_max_records": 1, "max_retries_per_topic": 0,
        "accuracy_threshold": 0.0, "dpo_trigger_threshold": 0.75, "topic_pass_threshold": 0.9,
    }


class StopAt(Recorder):
    """Stops the run (as Ctrl-C does) when ``stage`` of ``topic`` reports ``step``."""

    def __init__(self, stage: str, topic: str, step: int) -> None:
        super().__init__()
        self.at = (stage, topic, step)

    def on_step(self, stage: str, topic_id: str, step: int, metrics: Mapping[str, float]) -> None:
        super().on_step(stage, topic_id, step, metrics)
        if (stage, topic_id, step) == self.at:
            raise PipelineInterrupted("test stop")


def curriculum(be: Backend, cfg: PipelineConfig, rec: Recorder, *, resume: bool = False) -> Any:
    return DPOPipeline(config=cfg, backend=be, callbacks=[rec]).train_curriculum(SFT, PAIRS, resume=resume)


def final_adapter(result: Any) -> dict[Any, tuple[np.ndarray, np.ndarray]]:
    return read_adapter(result.final_adapter_path)[1]


def stage_dir(out: Path, stage: str, topic: str) -> Path:
    from mindprint_pipeline.pipeline import _slug, trainer_topic_id

    return out / "runs" / _slug(topic) / "attempt-0" / stage / trainer_topic_id(topic)


@pytest.fixture(scope="module", params=["mlx", "pytorch"])
def uninterrupted(request: pytest.FixtureRequest, tiny_model_dir: Path,
                  tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Any, Recorder]:
    name = request.param
    rec = Recorder()
    out = tmp_path_factory.mktemp(f"full-{name}")
    result = curriculum(make_backend(name), PipelineConfig.from_dict(settings(tiny_model_dir, out)), rec)
    assert result.completed and [t.dpo_applied for t in result.topics] == [True, True]
    return name, result, rec


def _interrupt(be: Backend, cfg: PipelineConfig, stage: str, topic: str) -> int:
    """Stop at step 2 of the stage; returns the step of its newest checkpoint."""
    first = curriculum(be, cfg, StopAt(stage, topic, 2))
    assert not first.completed
    state = load_state(cfg.checkpoint_path)
    assert state is not None and state.current is not None and state.current["topic"] == topic
    [*_, newest] = sorted(c.global_step for c in step_checkpoints(checkpoint_root(stage_dir(Path(cfg.output_dir),
                                                                                             stage, topic))))
    assert newest >= 1
    return newest


# torch runs the DPO case only (it covers the skipped SFT and the stage resume; each torch curriculum costs tens of
# seconds on a loaded 2-core machine); MLX both.
@pytest.mark.parametrize(("uninterrupted", "stage", "topic"),
                         [("mlx", "sft", T2), ("mlx", "dpo", T1), ("pytorch", "dpo", T1)], indirect=["uninterrupted"])
def test_resume_continues_the_interrupted_stage_bitwise(uninterrupted: tuple[str, Any, Recorder], stage: str,
                                                         topic: str, tiny_model_dir: Path, tmp_path: Path) -> None:
    name, full, full_rec = uninterrupted
    be = make_backend(name)
    cfg = PipelineConfig.from_dict(settings(tiny_model_dir, tmp_path / "out"))
    k = _interrupt(be, cfg, stage, topic)
    rec = Recorder()
    resumed = curriculum(be, cfg, rec, resume=True)
    assert resumed.completed
    assert [e[1:] for e in rec.kinds("start")] == ([(T2, 0)] if topic == T2 else [(T1, 0), (T2, 0)])
    later = rec.steps(stage, topic)
    assert [m["loss"] for m in later] == [m["loss"] for m in full_rec.steps(stage, topic)[k:]]  # steps k+1..3
    assert len(later) == 3 - k
    if stage == "dpo":
        assert rec.steps("sft", T1) == []  # topic 1's finished SFT is not trained again
    for a, b in zip(full.topics, resumed.topics, strict=True):
        assert (a.status, a.attempts, a.sft_loss, a.dpo_loss, a.accuracy, a.voice) == \
            (b.status, b.attempts, b.sft_loss, b.dpo_loss, b.accuracy, b.voice), a.topic_id
    mine, theirs = final_adapter(resumed), final_adapter(full)
    assert mine.keys() == theirs.keys()
    for site in mine:
        for x, y in zip(mine[site], theirs[site], strict=True):
            assert np.array_equal(x, y), f"{name} {site}"
    assert load_state(cfg.checkpoint_path).current is None  # type: ignore[union-attr]


def test_a_fresh_stage_drops_checkpoints_of_an_earlier_run(tiny_model_dir: Path, tmp_path: Path) -> None:
    """resume=False over an old run's output: its step checkpoints are removed, never continued later."""
    be = make_backend("mlx")
    cfg = PipelineConfig.from_dict(settings(tiny_model_dir, tmp_path / "out"))
    _interrupt(be, cfg, "sft", T1)
    stale = checkpoint_root(stage_dir(tmp_path / "out", "sft", T1)) / "checkpoint-99"
    stale.mkdir()
    curriculum(be, cfg, StopAt("sft", T1, 1))
    assert not stale.exists()


@pytest.mark.parametrize(("first", "uninterrupted"), [("mlx", "pytorch"), ("pytorch", "mlx")], indirect=["uninterrupted"])
def test_resume_on_the_other_backend(first: str, uninterrupted: tuple[str, Any, Recorder], tiny_model_dir: Path,
                                     tmp_path: Path) -> None:
    """Stopped on ``first``, resumed on the other backend: compared with the other backend's uninterrupted run."""
    second, full, full_rec = uninterrupted
    cfg = PipelineConfig.from_dict(settings(tiny_model_dir, tmp_path / "out"))
    k = _interrupt(make_backend(first), cfg, "dpo", T1)
    rec = Recorder()
    resumed = curriculum(make_backend(second), cfg, rec, resume=True)
    assert resumed.completed and len(rec.steps("dpo", T1)) == 3 - k
    got = [m["loss"] for m in rec.steps("dpo", T1) + rec.steps("sft", T2) + rec.steps("dpo", T2)]
    expected = [m["loss"] for m in full_rec.steps("dpo", T1)[k:] + full_rec.steps("sft", T2)
                + full_rec.steps("dpo", T2)]
    assert got == pytest.approx(expected, rel=2e-3, abs=1e-4), f"{first}->{second}"


@pytest.mark.mlx
@pytest.mark.slow  # measured 63 s on the 2-core machine under load (a child process loading MLX, then the resume)
@pytest.mark.parametrize("uninterrupted", ["mlx"], indirect=True)
def test_sigkill_inside_a_topic_then_resume(uninterrupted: tuple[str, Any, Recorder], tiny_model_dir: Path,
                                            tmp_path: Path) -> None:
    """One backend is enough for the kill: the resume path is the one of the tests above."""
    _, full, full_rec = uninterrupted
    out = tmp_path / "out"
    (tmp_path / "cfg.json").write_text(json.dumps({"settings": settings(tiny_model_dir, out), "sft": SFT,
                                                   "pairs": PAIRS}))
    proc = subprocess.Popen([sys.executable, str(WORKER), str(tmp_path / "cfg.json")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    watched = checkpoint_root(stage_dir(out, "dpo", T1))
    deadline = time.monotonic() + 300
    while not step_checkpoints(watched) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "the worker ended before topic 1's DPO saved a step checkpoint"
    proc.kill()
    proc.wait()
    k = step_checkpoints(watched)[0].global_step
    assert k < 3
    rec = Recorder()
    resumed = curriculum(make_backend("mlx"), PipelineConfig.from_dict(settings(tiny_model_dir, out)), rec,
                         resume=True)
    assert resumed.completed
    assert [m["loss"] for m in rec.steps("dpo", T1)] == [m["loss"] for m in full_rec.steps("dpo", T1)[k:]]
    assert rec.steps("sft", T1) == []
    mine, theirs = final_adapter(resumed), final_adapter(full)
    for site in theirs:
        for x, y in zip(mine[site], theirs[site], strict=True):
            assert np.array_equal(x, y), site
