"""Progress everywhere (#21): phases from the library, per-step lines, heartbeats, --quiet, --log-format json.

The CLI tests run the real command on the tiny random Llama with stderr piped (not a terminal), so the
plain format is chosen; the heartbeat is tested on the reporter with a fake clock (no sleeping)."""

from __future__ import annotations

import io
import json
import re
from datetime import datetime, timezone
from pathlib import Path

import pytest

from mindprint_interfaces import phases
from mindprint_trainer.progress import ProgressDisplay
from mindprint_trainer.reporting import JsonReporter, PlainReporter, Reporter, make_reporter
from tests.trainer.helpers import run_mindprint
from tests.trainer.test_runs_tiny import write_curriculum

STAMP = r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} "


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _reporter(cls: type[PlainReporter], clock: FakeClock) -> tuple[PlainReporter, io.StringIO]:
    stream = io.StringIO()
    fixed = datetime(2026, 12, 2, 0, 15, 3, tzinfo=timezone.utc)
    extra = {"min_seconds": 0.0} if cls is PlainReporter else {}
    return cls(stream, now=lambda: fixed, clock=clock, heartbeat=30.0, **extra), stream


# -- the reporter on its own ------------------------------------------------------------------------------------


def test_heartbeat_during_a_long_phase_with_a_fake_clock() -> None:
    clock = FakeClock()
    rep, stream = _reporter(PlainReporter, clock)
    with phases.listening(rep), phases.phase("evaluate", detail="u1/c/alpha", total=4) as p:
        rep.tick()  # just started: nothing to say
        clock.now += 29.0
        rep.tick()
        assert "still" not in stream.getvalue()
        clock.now += 2.0  # 31 s without a line
        rep.tick()
        p.advance()
        clock.now += 10.0
        rep.tick()  # 10 s after the advance line: quiet again
        clock.now += 25.0
        rep.tick()  # 35 s after the advance line
    lines = stream.getvalue().splitlines()
    assert all(re.match(STAMP, line) for line in lines), lines
    bodies = [line[20:] for line in lines]
    assert bodies == ["evaluate u1/c/alpha (4) ...",
                      "still evaluate u1/c/alpha (31 s, 0/4)",
                      "evaluate u1/c/alpha: 1/4",
                      "still evaluate u1/c/alpha (66 s, 1/4)",
                      "evaluate u1/c/alpha: done in 66 s"]
    rep.tick()  # nothing in flight: no heartbeat after the phase ended
    clock.now += 100.0
    rep.tick()
    assert len(stream.getvalue().splitlines()) == 5


def test_heartbeat_during_a_long_training_step_and_nested_phases() -> None:
    clock = FakeClock()
    rep, stream = _reporter(PlainReporter, clock)
    rep.task_start("sft", "u1/c/a", 10)
    clock.now += 5.0
    rep.step("sft", "u1/c/a", 1, 10, {"loss": 2.5, "learning_rate": 1e-4, "grad_norm": 0.5})
    clock.now += 40.0
    rep.tick()
    rep.task_end("sft", "u1/c/a")
    with phases.listening(rep), phases.phase("merge", detail="unit u1"), phases.phase("load model", detail="base"):
        clock.now += 31.0
        rep.tick()
    bodies = [line[20:] for line in stream.getvalue().splitlines()]
    assert bodies[0] == "SFT u1/c/a training (10 steps) ..."
    assert bodies[1] == "SFT u1/c/a step 1/10 loss 2.5000 lr 1.00e-04 grad_norm 0.5000 [elapsed 5.0 s, ETA 45 s]"
    assert bodies[2] == "still SFT u1/c/a training (step 2) (45 s, 1/10)"
    assert bodies[3:6] == ["merge unit u1 ...", "merge unit u1 > load model base ...",
                           "still merge unit u1 > load model base (31 s)"]
    assert bodies[6:] == ["merge unit u1 > load model base: done in 31 s", "merge unit u1: done in 31 s"]


def test_plain_writes_a_phase_only_once_it_runs_for_two_seconds() -> None:
    clock = FakeClock()
    stream = io.StringIO()
    rep = PlainReporter(stream, clock=clock, min_seconds=2.0)
    with phases.listening(rep):
        with phases.phase("load model", detail="quick"):
            clock.now += 1.0
        assert stream.getvalue() == ""  # a quick phase leaves no line
        with phases.phase("merge", detail="u1"):
            clock.now += 1.0
            rep.tick()
            assert stream.getvalue() == ""
            clock.now += 1.5
            rep.tick()  # 2.5 s: now it is written
        with phases.phase("evaluate"), phases.phase("answer questions", total=2) as p:
            p.advance()  # a count is always shown, with the phases it sits in
    bodies = [line[20:] for line in stream.getvalue().splitlines()]
    assert bodies == ["merge u1 ...", "merge u1: done in 2.5 s", "evaluate ...", "evaluate > answer questions (2) ...",
                      "evaluate > answer questions: 1/2", "evaluate > answer questions: done in 0.0 s",
                      "evaluate: done in 0.0 s"]  # once shown, a phase's end is shown too


def test_json_reporter_writes_one_object_per_line() -> None:
    clock = FakeClock()
    rep, stream = _reporter(JsonReporter, clock)
    display = ProgressDisplay(None, reporter_=rep)
    with display, phases.listening(rep):
        with phases.phase("reference pass", detail="2 pairs", total=2) as p:
            p.advance(2)
        display.trainer_callback("dpo", None, 2).on_step(1, {"loss": 0.69, "rewards/margins": float("nan")})
        clock.now += 31.0
        rep.tick()
        display.finish_task("dpo", None)
        display.note("[bold]run directory[/]: x")
    rows = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [r["event"] for r in rows] == ["phase_start", "phase_progress", "phase_end", "train_start", "step",
                                         "heartbeat", "train_end", "note"]
    assert all(r["time"] == "2026-12-02T00:15:03.000+00:00" for r in rows)
    assert rows[1] == {**rows[1], "phase": "reference pass", "done": 2, "total": 2}
    assert rows[2]["failed"] is False
    assert rows[4]["metrics"] == {"loss": 0.69, "rewards/margins": None}  # NaN is not JSON: null
    assert rows[4]["total"] == 2 and rows[4]["stage"] == "dpo"
    assert rows[5]["activity"] == "DPO training (step 2)"
    assert rows[7]["message"] == "run directory: x"


def test_a_failed_phase_is_reported_and_the_error_propagates() -> None:
    rep, stream = _reporter(JsonReporter, FakeClock())
    with phases.listening(rep), pytest.raises(OSError, match="disk full"), phases.phase("save adapter"):
        raise OSError("disk full")
    rows = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert rows[-1]["event"] == "phase_end" and rows[-1]["failed"] is True
    assert phases.listeners() == ()


def test_quiet_reporter_writes_nothing_and_auto_picks_plain_off_a_terminal() -> None:
    assert type(make_reporter("json", quiet=True)) is Reporter
    assert type(make_reporter("auto", stream=io.StringIO())) is PlainReporter
    with pytest.raises(ValueError, match="--log-format"):
        make_reporter("xml")


# -- the real command, output piped ---------------------------------------------------------------------------

@pytest.mark.torch
def test_sft_piped_shows_phases_and_timestamped_steps_in_order(tmp_path: Path, tiny_model_dir: Path) -> None:
    data = write_curriculum(tmp_path)
    res = run_mindprint("sft", "--backend", "pytorch", "--model", str(tiny_model_dir), "--data",
                        str(data / "sft_data.jsonl"), "--set", "sft.max_steps=3", "-o", str(tmp_path / "runs"),
                        env={"MINDPRINT_PHASE_LINES_AFTER": "0"})  # every phase, however short, for the order
    assert res.returncode == 0, res.stderr
    lines = res.stderr.splitlines()
    assert all(re.match(STAMP, line) for line in lines), lines
    bodies = [line[20:] for line in lines]

    def first(prefix: str) -> int:
        return next(i for i, b in enumerate(bodies) if b.startswith(prefix))

    steps = [i for i, b in enumerate(bodies) if re.match(r"SFT step \d/3 loss \d", b)]
    assert len(steps) == 3, bodies
    order = [first("load model "), first("tokenise 4 records"), steps[0], steps[1], steps[2], first("save adapter "),
             first("run directory: ")]
    assert order == sorted(order), bodies
    assert "SFT done: final loss" in res.stdout


@pytest.mark.torch
def test_train_json_lines_parse_and_keep_the_order(tmp_path: Path, tiny_model_dir: Path) -> None:
    data = write_curriculum(tmp_path)
    args = ["train", "--backend", "pytorch", "--model", str(tiny_model_dir), "--data-dir", str(data),
            "--set", "data.quiz_file=quiz.jsonl", "--set", "pipeline.sft_epochs_per_topic=1",
            "--set", "pipeline.dpo_steps_per_topic=1", "--set", "pipeline.max_retries_per_topic=0",
            "--set", "pipeline.eval_max_new_tokens=2", "--set", "pipeline.accuracy_threshold=0",
            "--set", "pipeline.dpo_trigger_threshold=1", "--set", "pipeline.merge_after_unit=true"]
    res = run_mindprint(*args, "--log-format", "json", "-o", str(tmp_path / "runs"))
    assert res.returncode == 0, res.stderr
    rows = [json.loads(line) for line in res.stderr.splitlines()]  # every line parses
    events = [(r["event"], r.get("phase") or r.get("topic") or r.get("unit")) for r in rows]
    names = [e for e, _ in events]
    assert {"phase_start", "phase_progress", "phase_end", "step", "topic_start", "topic_end", "unit_end"} <= set(names)
    started = [p for e, p in events if e == "phase_start"]
    for needed in ("load model", "tokenise", "reference pass", "evaluate", "answer questions", "save adapter",
                   "merge"):
        assert needed in started, (needed, started)
    answered = [r for r in rows if r["event"] == "phase_progress" and r["phase"] == "answer questions"]
    assert [r["done"] for r in answered[:2]] == [1, 2] and answered[0]["total"] == 2  # one per quiz question

    def index(event: str, key: str | None = None) -> int:
        return next(i for i, (e, k) in enumerate(events) if e == event and (key is None or k == key))

    alpha = [index("topic_start", "u1/c/alpha"), index("phase_start", "tokenise"), index("step"),
             index("phase_start", "evaluate"), index("phase_start", "reference pass"), index("topic_end", "u1/c/alpha"),
             index("phase_start", "merge"), index("unit_end", "u1"), index("topic_start", "u2/c/beta")]
    assert alpha == sorted(alpha), events
    steps = [r for r in rows if r["event"] == "step"]
    assert {r["stage"] for r in steps} == {"sft", "dpo"} and all("loss" in r["metrics"] for r in steps)
    assert "topics passed" in res.stdout


@pytest.mark.torch
def test_quiet_shows_only_the_final_summary_and_errors(tmp_path: Path, tiny_model_dir: Path) -> None:
    data = write_curriculum(tmp_path)
    res = run_mindprint("sft", "--backend", "pytorch", "--model", str(tiny_model_dir), "--data",
                        str(data / "sft_data.jsonl"), "--set", "sft.max_steps=2", "--quiet", "-o", str(tmp_path / "q"))
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""
    assert "SFT done: final loss" in res.stdout  # the final summary stays
    assert (next((tmp_path / "q").iterdir()) / "summary.md").is_file()



def test_errors_under_quiet_and_json(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "q"}\n{"output": "a"}\n')  # refused before any backend is imported
    res = run_mindprint("sft", "--backend", "pytorch", "--data", str(bad), "--quiet", "-o", str(tmp_path / "q"))
    assert res.returncode == 2
    assert res.stderr.startswith("error: 2 invalid records in ")  # --quiet keeps errors
    res = run_mindprint("sft", "--backend", "pytorch", "--data", str(bad), "--log-format", "json",
                        "-o", str(tmp_path / "j"))
    assert res.returncode == 2
    rows = [json.loads(line) for line in res.stderr.splitlines()]
    assert [r["event"] for r in rows] == ["error", "error", "error"]
    assert rows[0]["message"].startswith("2 invalid records in ") and "bad.jsonl:1" in rows[1]["message"]


def test_rich_reporter_shows_phases_while_they_run_and_notes_the_long_ones() -> None:
    from rich.console import Console

    from mindprint_trainer.reporting import RichReporter

    clock = FakeClock()
    out = io.StringIO()
    rep = RichReporter(Console(file=out, force_terminal=True, width=120), clock=clock)
    with phases.listening(rep):
        with phases.phase("load model", detail="tiny"):
            assert [t.description for t in rep.progress.tasks] == ["load model tiny"] and rep.live
        with phases.phase("evaluate", detail="u1/c/a"), phases.phase("answer questions", total=3) as p:
            p.advance()
            assert [(t.description, t.completed, t.total) for t in rep.progress.tasks] == [
                ("evaluate u1/c/a", 0, None), ("evaluate u1/c/a > answer questions", 1, 3)]
            clock.now += 5.0
    assert rep.progress.tasks == [] and not rep.live  # phases leave no bar behind; the display stopped
    display = ProgressDisplay(None, reporter_=rep)
    with display:
        display.trainer_callback("sft", None, 2).on_step(1, {"loss": 1.0})
        assert [t.description for t in rep.progress.tasks] == ["SFT"]
    with phases.listening(rep), phases.phase("answers after training"):
        assert [t.description for t in rep.progress.tasks] == ["answers after training"]  # no old bars redrawn
    text = out.getvalue()
    assert "evaluate u1/c/a > answer questions: done in 5.0 s" in plain_text_of(text)
    assert "load model tiny: done" not in plain_text_of(text)  # short phases leave no note


def plain_text_of(ansi: str) -> str:
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", ansi)
