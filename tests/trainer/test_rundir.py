"""Run directory: metrics.jsonl lines, PNG plots, summary table, progress display."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console

from mindprint_trainer.progress import ProgressDisplay
from mindprint_trainer.rundir import RunDirectory, TopicRow, new_run_dir, write_plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_new_run_dir_is_unique(tmp_path: Path) -> None:
    a = new_run_dir(tmp_path, "train")
    b = new_run_dir(tmp_path, "train")
    assert a != b and a.is_dir() and b.is_dir()
    assert a.name.endswith("-train")


def test_metrics_plots_summary(tmp_path: Path) -> None:
    run = RunDirectory(tmp_path / "run", "train")
    run.write_config("backend:\n  type: pytorch\n")
    for step in range(1, 4):
        run.log_step("sft", "u/c/t1", step, {"loss": 2.0 / step, "learning_rate": 1e-4, "grad_norm": 0.5})
    for step in range(1, 3):
        run.log_step("dpo", "u/c/t1", step, {"loss": 0.69 - 0.01 * step, "rewards/margins": 0.1 * step,
                                             "rewards/accuracies": 0.5, "rewards/chosen": 0.1, "rewards/rejected": -0.1})
    run.log_step("sft", "u/c/t2", 1, {"loss": float("nan")})
    rows = run.read_metrics()
    assert len(rows) == 6
    first = rows[0]
    assert {"stage", "topic", "step", "loss", "lr", "grad_norm", "timestamp"} <= set(first)
    assert first["lr"] == 1e-4
    assert rows[3]["rewards/margins"] == 0.1
    assert rows[-1]["loss"] is None  # non-finite -> null, the file stays valid JSON
    for line in run.metrics_path.read_text().splitlines():
        json.loads(line)

    written = run.write_plots()
    assert [p.name for p in written] == ["loss.png", "rewards.png"]
    for p in written:
        assert p.read_bytes()[:8] == PNG_MAGIC
        assert p.stat().st_size > 5000

    summary = run.write_summary(title="mindprint train", facts={"backend": "pytorch"}, topics=[
        TopicRow("u/c/t1", "passed", 0.9, 0.8, 1, 12.0, True), TopicRow("u/c/t2", "failed", 0.2, 0.1, 2, 30.0)])
    text = summary.read_text()
    assert "| topic | status | accuracy | voice | DPO | attempts | time (s) |" in text
    assert "| u/c/t1 | passed | 0.90 | 0.80 | yes | 1 | 12.0 |" in text
    assert "![loss.png](loss.png)" in text
    assert oct(summary.stat().st_mode & 0o777) == "0o644"


def test_no_dpo_no_rewards_plot(tmp_path: Path) -> None:
    written = write_plots([{"stage": "sft", "topic": None, "step": 1, "loss": 1.0}], tmp_path)
    assert [p.name for p in written] == ["loss.png"]


def test_progress_display_records_steps(tmp_path: Path) -> None:
    run = RunDirectory(tmp_path / "run")
    console = Console(file=open(tmp_path / "out.txt", "w"), force_terminal=False)  # noqa: SIM115
    display = ProgressDisplay(run, console=console)
    display.totals[("sft", "u/c/t")] = 3
    with display:
        display.on_topic_start("u/c/t", 0)
        cb = display.trainer_callback("sft", "u/c/t", 3)
        for step in (1, 2, 3):
            cb.on_step(step, {"loss": 1.0 / step})
        display.on_step("dpo", "u/c/t", 1, {"loss": 0.69, "rewards/margins": 0.0})

        class Progress:
            topic_id = "u/c/t"
            status = "passed"
            accuracy = 0.9
            voice = 0.7
            dpo_applied = True

        display.on_topic_end(Progress())
    assert display.steps_logged == 4
    assert [r["stage"] for r in run.read_metrics()] == ["sft", "sft", "sft", "dpo"]
    assert "u/c/t" in display.topic_results


def test_new_run_dir_race_never_shares_a_directory(tmp_path: Path, monkeypatch) -> None:
    # another process claims the name between our exists() look and our mkdir: we take the next name
    from datetime import datetime
    now = datetime(2026, 1, 1, 12, 0, 0)
    taken = tmp_path / "20260101-120000-train"
    real_mkdir = Path.mkdir

    def racing_mkdir(self: Path, *args: object, **kwargs: object) -> None:
        if self == taken and not taken.exists():
            real_mkdir(taken)  # the other process wins
        real_mkdir(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "mkdir", racing_mkdir)
    path = new_run_dir(tmp_path, "train", now=now)
    assert path == tmp_path / "20260101-120000-train-2" and path.is_dir()


def test_resumed_run_directory_drops_dead_temporaries(tmp_path: Path) -> None:
    run_path = tmp_path / "run"
    adapters = run_path / "adapters" / "u-c-t"
    adapters.mkdir(parents=True)
    stale = adapters.parent / ".u-c-t.tmp-999999999-abcdefgh"
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"x" * 100)
    RunDirectory(run_path, "train")
    assert not stale.exists() and adapters.is_dir()


def test_resume_drops_metrics_rows_of_topics_trained_again(tmp_path: Path) -> None:
    run = RunDirectory(tmp_path / "run", "train")
    for topic in ("u/c/done", "u/c/interrupted"):
        for step in (1, 2):
            run.log_step("sft", topic, step, {"loss": 1.0})
    run.log_step("merge", None, 0, {"seconds": 1.0})
    with run.metrics_path.open("a") as fh:
        fh.write('{"stage": "sft", "topic": "u/c/interr')  # the line the kill cut
    assert run.keep_metrics_of({"u/c/done"}) == 3
    rows = run.read_metrics()
    assert [(r["topic"], r["step"]) for r in rows] == [("u/c/done", 1), ("u/c/done", 2), (None, 0)]
    assert run.keep_metrics_of({"u/c/done"}) == 0


def test_resume_inside_a_topic_keeps_its_rows_and_replaces_those_logged_again(tmp_path: Path) -> None:
    """The killed run logged sft steps 1-3 of attempt 0 (checkpoint after 2) and a retry's step 1; the resumed
    stage continues at step 3: rows 1-2 stay, the old step 3 is replaced, the other attempt's row stays."""
    run = RunDirectory(tmp_path / "run", "train")
    for step in (1, 2, 3):
        run.log_step("sft", "u/c/now", step, {"loss": float(step)}, attempt=0)
    run.log_step("sft", "u/c/now", 1, {"loss": 9.0}, attempt=1)
    run.log_step("sft", "u/c/later", 1, {"loss": 1.0}, attempt=0)  # cannot happen, but is not kept if it does
    assert run.keep_metrics_of(set(), current="u/c/now") == 1
    run.log_step("sft", "u/c/now", 3, {"loss": 30.0}, attempt=0)
    run.log_step("sft", "u/c/now", 4, {"loss": 40.0}, attempt=0)
    rows = [(r["attempt"], r["step"], r["loss"]) for r in run.read_metrics()]
    assert rows == [(0, 1, 1.0), (0, 2, 2.0), (1, 1, 9.0), (0, 3, 30.0), (0, 4, 40.0)]
