"""Decision branches (retry, DPO trigger, pass/fail), Ctrl-C checkpoints and the real default evaluator.

A ScriptedEvaluator (a test double of the pipeline's own Evaluator protocol) drives the branches
deterministically; the backend is real (tiny random Llama).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mindprint_interfaces import Backend
from mindprint_pipeline import CheckpointError, DefaultEvaluator, DPOPipeline, load_state

from .conftest import Recorder, ScriptedEvaluator, fast_config


def _sft(topic: str, *pairs: tuple[str, str]) -> list[dict[str, Any]]:
    return [{"question": q, "answer": a, "topic_id": topic} for q, a in pairs]


QA = [("What is two plus two?", "Two plus two is four."), ("What is the answer?", "The answer is yes.")]
QB = [("What is the capital of France?", "The capital of France is Paris."),
      ("What is the capital of Italy?", "The capital of Italy is Rome.")]


def test_sft_replays_earlier_topics_records(backend: Backend, tiny_model_dir: Path, tmp_path: Path) -> None:
    sft = _sft("u1/c/a", *QA) + _sft("u1/c/b", *QB) + _sft("u2/c/c", *QA)
    ev = ScriptedEvaluator({t: [(1.0, 1.0)] for t in ("u1/c/a", "u1/c/b", "u2/c/c")})
    cfg = fast_config(tiny_model_dir, tmp_path / "out", merge_after_unit=False, sft_replay_per_topic=3)
    result = DPOPipeline(config=cfg, backend=backend, evaluator=ev).train_curriculum(sft, [])
    # 2 own records each (1 epoch), plus what the earlier topics have, up to 3
    assert [t.history[0].sft_samples for t in result.topics] == [2, 4, 5]
    assert cfg.training_fingerprint()["sft_replay_per_topic"] == 3
    assert "sft_replay_per_topic" not in fast_config(tiny_model_dir, tmp_path).training_fingerprint()  # off: as
    # before the setting existed, so older checkpoints resume


def test_retry_really_retrains_from_the_topic_start(backend: Backend, tiny_model_dir: Path, tmp_path: Path) -> None:
    sft = _sft("u1/c/a", *QA) + _sft("u1/c/b", *QB) + _sft("u2/c/c", *QA)
    script = {"u1/c/a": [(1.0, 1.0)], "u1/c/b": [(0.5, 0.5), (1.0, 1.0)], "u2/c/c": [(0.6, 0.6), (0.2, 0.2)]}
    ev = ScriptedEvaluator(script)
    rec = Recorder()
    cfg = fast_config(tiny_model_dir, tmp_path / "out", max_retries_per_topic=1, merge_after_unit=False,
                      sft_epochs_per_topic=3)
    result = DPOPipeline(config=cfg, backend=backend, evaluator=ev, callbacks=[rec]).train_curriculum(sft, [])
    a, b, c = result.topics
    assert (a.status, a.attempts) == ("passed", 1)
    assert (b.status, b.attempts, b.retries) == ("passed", 2, 1)
    assert (c.status, c.attempts) == ("failed", 2)
    assert result.failed_topics == ["u2/c/c"] and result.pass_rate == pytest.approx(2 / 3)
    assert [h.seed for h in b.history] == [cfg.seed + 1000, cfg.seed + 1001]  # another seed per retry
    assert [e[1:] for e in rec.kinds("start")] == [("u1/c/a", 0), ("u1/c/b", 0), ("u1/c/b", 1), ("u2/c/c", 0),
                                                   ("u2/c/c", 1)]
    # Each attempt is a real SFT run: 3 epochs of one batch = 3 steps, and the loss goes down ...
    b0, b1 = rec.steps("sft", "u1/c/b")[:3], rec.steps("sft", "u1/c/b")[3:]
    assert len(b0) == len(b1) == 3
    assert b0[-1]["loss"] < b0[0]["loss"]
    # ... and a retry starts from the topic's starting adapter (topic a's), not from the failed attempt:
    # with the whole topic in one batch, the first-step loss is the start model's loss.
    assert b1[0]["loss"] == pytest.approx(b0[0]["loss"], rel=1e-4)
    assert b1[0]["loss"] > b0[-1]["loss"]
    # the curriculum continues from the passing attempt's adapter; a failed topic keeps its best attempt
    assert b.adapter_path is not None and b.adapter_path.endswith("attempt-1")
    assert c.adapter_path is not None and c.adapter_path.endswith("attempt-0")
    assert c.score == pytest.approx(0.6)
    for h in b.history + c.history:
        assert h.adapter_path and Path(h.adapter_path).is_dir()
    assert result.final_adapter_path == c.adapter_path  # merge_after_unit=False: no merged model
    assert result.final_model_path == str(tiny_model_dir)
    assert not (tmp_path / "out" / "merged").exists()


def test_dpo_trigger_and_pass_rules(backend: Backend, tiny_model_dir: Path, tmp_path: Path) -> None:
    sft = _sft("u/c/x", *QA) + _sft("u/c/y", *QA) + _sft("u/c/z", *QB) + _sft("u/c/w", *QB)
    prefs = [{"prompt": q, "chosen": a, "rejected": "No.", "topic_id": t}
             for t in ("u/c/x", "u/c/y", "u/c/w") for q, a in QA]
    script = {
        "u/c/x": [(0.8, 0.5), (0.95, 0.9)],  # accuracy ok, voice low, has pairs -> DPO -> re-evaluated -> passed
        "u/c/y": [(0.5, 0.5)],  # accuracy below accuracy_threshold -> no DPO -> failed
        "u/c/z": [(0.8, 0.5)],  # no preference pairs -> no DPO -> failed
        "u/c/w": [(0.8, 0.8)],  # voice >= dpo_trigger_threshold -> no DPO; 0.8 < 0.9 -> failed
    }
    ev = ScriptedEvaluator(script)
    rec = Recorder()
    cfg = fast_config(tiny_model_dir, tmp_path / "out", accuracy_threshold=0.7, merge_after_unit=False)
    result = DPOPipeline(config=cfg, backend=backend, evaluator=ev, callbacks=[rec]).train_curriculum(sft, prefs)
    x, y, z, w = result.topics
    assert (x.status, x.dpo_applied, x.accuracy, x.voice) == ("passed", True, 0.95, 0.9)
    assert (x.history[0].accuracy_after_sft, x.history[0].voice_after_sft) == (0.8, 0.5)
    assert x.dpo_loss is not None and x.history[0].dpo_samples > 0
    assert len(rec.steps("dpo", "u/c/x")) == cfg.dpo_steps_per_topic
    for t in (y, z, w):
        assert (t.status, t.dpo_applied, t.dpo_loss) == ("failed", False, None)
        assert not rec.steps("dpo", t.topic_id)
    assert ev.calls == ["u/c/x", "u/c/x", "u/c/y", "u/c/z", "u/c/w"]


def test_ctrl_c_leaves_a_valid_checkpoint(backend: Backend, tiny_model_dir: Path, tmp_path: Path) -> None:
    sft = _sft("u/c/a", *QA) + _sft("u/c/b", *QB)

    class CtrlC(Recorder):
        def on_step(self, stage: str, topic_id: str, step: int, metrics: Any) -> None:
            if topic_id == "u/c/b":
                raise KeyboardInterrupt

    cfg = fast_config(tiny_model_dir, tmp_path / "out", merge_after_unit=False)
    with pytest.raises(KeyboardInterrupt):
        DPOPipeline(config=cfg, backend=backend, evaluator=ScriptedEvaluator({}), callbacks=[CtrlC()]
                    ).train_curriculum(sft, [])
    state = load_state(cfg.checkpoint_path)
    assert state is not None and list(state.topics) == ["u/c/a"]
    assert state.adapter_path == state.topics["u/c/a"].adapter_path
    assert state.adapter_path is not None and Path(state.adapter_path).is_dir()
    # a resume with other training settings is refused, naming the difference
    changed = fast_config(tiny_model_dir, tmp_path / "out", merge_after_unit=False, lora_r=8)
    with pytest.raises(CheckpointError, match="lora_r: 4 -> 8"):
        DPOPipeline(config=changed, backend=backend, evaluator=ScriptedEvaluator({})).train_curriculum(
            sft, [], resume=True)
    with pytest.raises(CheckpointError, match="different training data"):
        DPOPipeline(config=cfg, backend=backend, evaluator=ScriptedEvaluator({})).train_curriculum(
            sft[:3], [], resume=True)
    rec = Recorder()
    result = DPOPipeline(config=cfg, backend=backend, evaluator=ScriptedEvaluator({}), callbacks=[rec]
                         ).train_curriculum(sft, [], resume_from_checkpoint=cfg.checkpoint_path)
    assert result.completed and result.passed_topics == ["u/c/a", "u/c/b"]
    assert [e[1] for e in rec.kinds("start")] == ["u/c/b"]


def test_default_evaluator_measures_learning(backend: Backend, tiny_model_dir: Path, tmp_path: Path) -> None:
    """The real offline evaluator end to end: a topic the model memorises scores high on accuracy."""
    sft = _sft("u/c/add", ("What is two plus two?", "Two plus two is four.")) * 2
    cfg = fast_config(tiny_model_dir, tmp_path / "out", sft_epochs_per_topic=30, sft_learning_rate=2e-2,
                      eval_max_new_tokens=12, merge_after_unit=False, topic_pass_threshold=0.5)
    pipe = DPOPipeline(config=cfg, backend=backend)
    result = pipe.train_curriculum(sft, [])
    [topic] = result.topics
    assert isinstance(pipe.evaluator, DefaultEvaluator)
    outputs = pipe.evaluator.last_outputs
    assert outputs and outputs[0]["reference"] == "Two plus two is four."
    assert topic.accuracy == pytest.approx(outputs[0]["accuracy"])
    assert topic.accuracy > 0.5, outputs
    assert topic.voice == 0.0  # no marker of the bundled markers file in the answer
    assert topic.history[0].metrics["voice_measured"] == 1.0
