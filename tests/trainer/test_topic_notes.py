"""A failed topic's note names the threshold it missed and the scores (summary.md and the console)."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from mindprint_pipeline.config import PipelineConfig
from mindprint_pipeline.progress import AttemptResult, TopicProgress
from mindprint_trainer.curriculum_run import topic_rows, topics_table
from mindprint_trainer.rundir import RunDirectory
from mindprint_trainer.topic_notes import failure_note

CFG = PipelineConfig(accuracy_threshold=0.3, dpo_trigger_threshold=0.9, topic_pass_threshold=0.6)


def topic(status: str, *attempts: AttemptResult) -> TopicProgress:
    t = TopicProgress("u/c/t", 0, status="failed" if status == "failed" else "passed", attempts=len(attempts))
    t.history = list(attempts)
    return t


def attempt(**kw: object) -> AttemptResult:
    base: dict[str, object] = {"attempt": 0, "seed": 0, "adapter_path": "/a"}
    a = AttemptResult(**(base | kw))  # type: ignore[arg-type]
    a.score = (a.accuracy + a.voice) / 2
    return a


def test_low_accuracy_after_sft_says_dpo_did_not_run() -> None:
    note = failure_note(topic("failed", attempt(accuracy_after_sft=0.2, voice_after_sft=0.0, accuracy=0.2,
                                                voice=0.0, metrics={"facts": 0.5, "facts_measured": 2.0})), CFG)
    assert note == ("score (accuracy 0.20 + voice 0.00) / 2 = 0.10 < topic_pass_threshold 0.60; "
                    "facts right 0.50 (of 2 quiz answers with facts); "
                    "DPO did not run: accuracy after SFT 0.20 < accuracy_threshold 0.30")


def test_dpo_ran_and_best_of_retries() -> None:
    first = attempt(accuracy_after_sft=0.5, voice_after_sft=0.0, dpo_applied=True, accuracy=0.5, voice=0.1)
    second = attempt(attempt=1, accuracy_after_sft=0.6, voice_after_sft=0.0, dpo_applied=True, accuracy=0.6,
                     voice=0.3)
    note = failure_note(topic("failed", first, second), CFG)
    assert note.startswith("score (accuracy 0.60 + voice 0.30) / 2 = 0.45 < topic_pass_threshold 0.60")
    assert "DPO ran: voice 0.00 after SFT -> 0.30, accuracy 0.60 -> 0.60" in note and "best of 2 attempts" in note
    voiced = attempt(accuracy_after_sft=0.1 + 0.3, voice_after_sft=0.95, accuracy=0.1, voice=0.95)
    assert "voice after SFT 0.95 >= dpo_trigger_threshold 0.90" in failure_note(topic("failed", voiced), CFG)
    no_pairs = failure_note(topic("failed", attempt(accuracy_after_sft=0.5)), CFG, has_pairs=False)
    assert "the topic has no preference pairs" in no_pairs
    assert failure_note(topic("passed", attempt(accuracy=1.0, voice=1.0)), CFG) == ""
    broken = topic("failed", attempt(adapter_path=None, error="SFT failed: loss nan"))
    assert failure_note(broken, CFG) == "no attempt could train (SFT failed: loss nan)"


def test_notes_reach_the_summary_and_the_console(tmp_path: Path) -> None:
    failed = topic("failed", attempt(accuracy_after_sft=0.2, accuracy=0.2))
    rows = topic_rows([failed], CFG, {"u/c/t": 3})
    assert rows[0].note.startswith("score (accuracy 0.20")
    assert topic_rows([failed])[0].note == ""  # without the thresholds: no note
    run = RunDirectory(tmp_path / "run", "train")
    text = run.write_summary(title="t", topics=rows).read_text()
    assert "Why topics failed" in text and f"- **u/c/t**: {rows[0].note}" in text
    console = Console(width=300, record=True)
    console.print(topics_table(rows))
    assert f"u/c/t failed: {rows[0].note}" in " ".join(console.export_text().split())  # wrapped to the table


def test_the_preference_stage_is_named_after_its_method(tmp_path: Path) -> None:
    cfg = PipelineConfig(accuracy_threshold=0.3, dpo_trigger_threshold=0.9, topic_pass_threshold=0.6,
                         preference_method="orpo")
    ran = attempt(accuracy_after_sft=0.5, voice_after_sft=0.1, accuracy=0.4, voice=0.2, dpo_applied=True)
    failed = topic("failed", ran)
    failed.dpo_applied = True
    note = failure_note(failed, cfg)
    assert "ORPO ran: voice 0.10 after SFT -> 0.20" in note and "DPO" not in note
    rows = topic_rows([failed], cfg)
    assert rows[0].method == "orpo"
    summary = RunDirectory(tmp_path / "run").write_summary(title="t", topics=rows).read_text()
    assert "| topic | status | accuracy | voice | ORPO | attempts | time (s) |" in summary
    console = Console(width=200, record=True)
    console.print(topics_table(rows))
    assert "ORPO" in console.export_text() and "DPO" not in console.export_text().replace("ORPO", "")
