"""The installed command on the tiny random Llama: sft / dpo / train write complete run directories."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.trainer.helpers import mindprint_exe, run_mindprint

pytestmark = pytest.mark.torch

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def write_curriculum(root: Path) -> Path:
    data = root / "data"
    data.mkdir()
    sft, prefs, quiz = [], [], []
    for topic, q, a in [("u1/c/alpha", "What is two plus two?", "Two plus two is four."),
                        ("u1/c/alpha", "What is the capital of France?", "The capital of France is Paris."),
                        ("u2/c/beta", "What do plants make?", "Plants make sugar and oxygen."),
                        ("u2/c/beta", "What is the capital of Italy?", "The capital of Italy is Rome.")]:
        sft.append({"instruction": q, "output": a, "topic_id": topic})
        prefs.append({"prompt": q, "chosen": "Great question! " + a, "rejected": "No.", "topic_id": topic})
        quiz.append({"question": q, "answer": "Great question! " + a, "topic_id": topic,
                     "must_include": [a.split()[-1].rstrip(".")], "must_not_include": ["banana"]})
    for name, rows in (("sft_data.jsonl", sft), ("preference_data.jsonl", prefs), ("quiz.jsonl", quiz)):
        (data / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    (data / "voice_markers.json").write_text(json.dumps({"markers": {"Great question": 1.0}}))
    return data


def only_run_dir(base: Path) -> Path:
    runs = [p for p in base.iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


def said_first(stderr: str, line: str) -> None:
    """``line`` is on stderr before any model work (the first load, tokenisation or training step)."""
    text = " ".join(stderr.split())  # a long path may wrap
    assert line in text, stderr[-2000:]
    work = [text.find(marker) for marker in ("load model", "tokenise", "SFT ") if marker in text]
    assert work and text.find(line) < min(work), stderr[:2000]


def check_metrics(run: Path, stages: set[str]) -> list[dict[str, object]]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows
    assert {r["stage"] for r in rows} == stages
    for r in rows:
        assert {"stage", "topic", "step", "loss", "timestamp"} <= set(r)
    return rows


def test_sft_then_generate_eval_merge(tmp_path: Path, tiny_model_dir: Path) -> None:
    data = write_curriculum(tmp_path)
    res = run_mindprint("sft", "--backend", "pytorch", "--model", str(tiny_model_dir), "--data",
                        str(data / "sft_data.jsonl"), "--set", "sft.max_steps=3", "-o", str(tmp_path / "runs"))
    assert res.returncode == 0, res.stderr
    run = only_run_dir(tmp_path / "runs")
    assert {"config.yaml", "metrics.jsonl", "loss.png", "summary.md", "adapters"} <= {p.name for p in run.iterdir()}
    assert (run / "loss.png").read_bytes()[:8] == PNG_MAGIC
    rows = check_metrics(run, {"sft"})
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert "lr" in rows[0] and "grad_norm" in rows[0]
    adapter = run / "adapters" / "sft"
    assert (adapter / "adapter_config.json").is_file()
    assert "type: pytorch" in (run / "config.yaml").read_text()
    assert "| sft_data.jsonl | trained |" in (run / "summary.md").read_text()

    res = run_mindprint("generate", "--backend", "pytorch", "--model", str(tiny_model_dir), "--adapter", str(adapter),
                        "--max-new-tokens", "5", "What is two plus two?")
    assert res.returncode == 0, res.stderr

    res = run_mindprint("eval", "--backend", "pytorch", "--model", str(tiny_model_dir), "--adapter", str(adapter),
                        "--data", str(data / "quiz.jsonl"), "--markers", str(data / "voice_markers.json"),
                        "--set", "pipeline.eval_max_new_tokens=4", "-o", str(tmp_path / "eval"))
    assert res.returncode == 0, res.stderr
    assert "u1/c/alpha" in res.stdout and "u2/c/beta" in res.stdout
    erun = only_run_dir(tmp_path / "eval")
    assert len((erun / "answers.jsonl").read_text().splitlines()) == 4

    out = tmp_path / "merged"
    res = run_mindprint("merge", "--backend", "pytorch", "--model", str(tiny_model_dir), "--adapter", str(adapter),
                        str(out))
    assert res.returncode == 0, res.stderr
    assert (out / "config.json").is_file()
    res = run_mindprint("merge", "--backend", "pytorch", "--model", str(tiny_model_dir), str(out / "again"))
    assert res.returncode == 2
    assert "merge needs an adapter" in res.stderr


def test_dpo_writes_rewards_plot(tmp_path: Path, tiny_model_dir: Path) -> None:
    data = write_curriculum(tmp_path)
    res = run_mindprint("dpo", "--backend", "pytorch", "--model", str(tiny_model_dir), "--data",
                        str(data / "preference_data.jsonl"), "--set", "dpo.max_steps=2", "-o", str(tmp_path / "runs"))
    assert res.returncode == 0, res.stderr
    run = only_run_dir(tmp_path / "runs")
    rows = check_metrics(run, {"dpo"})
    assert any("rewards/margins" in r for r in rows)
    assert (run / "rewards.png").read_bytes()[:8] == PNG_MAGIC
    assert (run / "adapters" / "dpo" / "adapter_config.json").is_file()


def test_train_curriculum_and_convert_adapter(tmp_path: Path, tiny_model_dir: Path) -> None:
    data = write_curriculum(tmp_path)
    res = run_mindprint(
        "train", "--backend", "pytorch", "--model", str(tiny_model_dir), "--data-dir", str(data),
        "--set", "data.quiz_file=quiz.jsonl", "--set", "pipeline.sft_epochs_per_topic=1",
        "--set", "pipeline.dpo_steps_per_topic=1", "--set", "pipeline.max_retries_per_topic=0",
        "--set", "pipeline.eval_max_new_tokens=4", "--set", "pipeline.accuracy_threshold=0",
        "--set", "pipeline.dpo_trigger_threshold=1", "--set", "pipeline.merge_after_unit=false",
        "-o", str(tmp_path / "runs"))
    assert res.returncode == 0, res.stderr
    run = only_run_dir(tmp_path / "runs")
    said_first(res.stderr, f"writing to {run}")
    rows = check_metrics(run, {"sft", "dpo"})
    assert {r["topic"] for r in rows} == {"u1/c/alpha", "u2/c/beta"}
    for name in ("loss.png", "rewards.png"):
        assert (run / name).read_bytes()[:8] == PNG_MAGIC
    summary = (run / "summary.md").read_text()
    assert "| topic | status | accuracy | voice | DPO | attempts | time (s) |" in summary
    assert "u1/c/alpha" in summary and "u2/c/beta" in summary
    # the random model fails its topics; the summary and the console say which threshold, which score
    result = json.loads((run / "pipeline_result.json").read_text())
    topics = [t for u in result["units"] for c in u["chapters"] for t in c["topics"]]
    assert [t["status"] for t in topics] == ["failed", "failed"]
    assert all(t["history"][0]["metrics"]["facts_measured"] == 2.0 for t in topics)  # the quiz's facts were read
    assert "Why topics failed" in summary
    assert "- **u1/c/alpha**: score (accuracy " in summary and "< topic_pass_threshold 0.60" in summary
    assert "DPO ran: voice " in summary
    assert "u1/c/alpha failed: score (accuracy" in " ".join(res.stdout.split())
    assert (run / "checkpoints" / "state.json").is_file()
    final = run / "adapters" / "final"
    assert (final / "adapter_config.json").is_file()
    assert "u1/c/alpha" in res.stdout

    mlx_dir = tmp_path / "mlx-adapter"
    res = run_mindprint("convert-adapter", str(final), str(mlx_dir), "--to", "mlx")
    assert res.returncode == 0, res.stderr
    assert (mlx_dir / "adapters.safetensors").is_file()
    back = tmp_path / "peft-again"
    res = run_mindprint("convert-adapter", str(mlx_dir), str(back), "--to", "peft")
    assert res.returncode == 0, res.stderr
    assert (back / "adapter_model.safetensors").is_file()



def test_ctrl_c_leaves_a_resumable_checkpoint(tmp_path: Path, tiny_model_dir: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    rows = [{"instruction": f"Question {i} about topic {t}?", "output": f"Answer {i} for topic {t}.",
             "topic_id": f"u/c/t{t}"} for t in range(4) for i in range(2)]
    (data / "sft_data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = ["train", "--backend", "pytorch", "--model", str(tiny_model_dir), "--data-dir", str(data),
            "--set", "data.markers_file=null", "--set", "pipeline.sft_epochs_per_topic=4",
            "--set", "pipeline.max_retries_per_topic=0", "--set", "pipeline.eval_max_new_tokens=2",
            "--set", "pipeline.merge_after_unit=false", "-o", str(tmp_path / "runs")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    env.pop("MINDPRINT_BACKEND", None)
    proc = subprocess.Popen([*mindprint_exe(), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    deadline = time.monotonic() + 300
    state: Path | None = None
    while time.monotonic() < deadline and proc.poll() is None:
        found = list((tmp_path / "runs").glob("*/checkpoints/state.json")) if (tmp_path / "runs").is_dir() else []
        if found and json.loads(found[0].read_text()).get("topics"):
            state = found[0]
            break
        time.sleep(0.1)
    assert state is not None, "no topic finished"
    if proc.poll() is not None:
        pytest.skip("the run finished before it could be interrupted")
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    run = state.parent.parent
    assert f"mindprint train --resume {run}" in " ".join(stderr.split())
    assert "Traceback" not in stderr
    done_before = set(json.loads(state.read_text())["topics"])
    assert 1 <= len(done_before) < 4

    res = run_mindprint("train", "--resume", str(run))
    assert res.returncode == 0, res.stderr
    said_first(res.stderr, f"continuing the run in {run}")
    assert set(json.loads(state.read_text())["topics"]) == {f"u/c/t{t}" for t in range(4)}
    summary = (run / "summary.md").read_text()
    assert all(f"u/c/t{t}" in summary for t in range(4))
    # The resumed run appended to the same metrics file and did not retrain the finished topics.
    trained = {r["topic"] for r in check_metrics(run, {"sft"})}
    assert trained == {f"u/c/t{t}" for t in range(4)}
