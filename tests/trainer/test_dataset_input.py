"""Hugging Face datasets as training data: parquet/arrow/csv/json files, save_to_disk directories, cached hub ids.

Everything is built locally (``datasets`` writes the files; the hub cache is laid out by hand as
huggingface_hub lays it out) and read with HF_HUB_OFFLINE=1: nothing is downloaded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mindprint_interfaces import ConfigError, DataValidationError
from mindprint_trainer.dataset_input import read_records
from tests.trainer.helpers import run_mindprint
from tests.trainer.test_runs_tiny import only_run_dir

datasets = pytest.importorskip("datasets")

QA = [{"question": "What is two plus two?", "answer": "Two plus two is four.", "topic_id": "u/c/math"},
      {"question": "What is the capital of France?", "answer": "Paris is the capital.", "topic_id": "u/c/geo"},
      {"question": "What do plants make?", "answer": "Plants make sugar.", "topic_id": "u/c/bio"}]
COLUMNS = {"instruction": "question", "output": "answer"}


def conversational_pairs() -> list[dict[str, Any]]:
    return [{"prompt": [{"role": "user", "content": r["question"]}],
             "chosen": [{"role": "assistant", "content": "Great question! " + r["answer"]}],
             "rejected": [{"role": "assistant", "content": "No."}]} for r in QA]


def test_parquet_with_column_mapping(tmp_path: Path) -> None:
    path = tmp_path / "qa.parquet"
    datasets.Dataset.from_list(QA).to_parquet(str(path))
    records = read_records(path, "sft", columns=COLUMNS)
    assert [r["instruction"] for r in records] == [r["question"] for r in QA]
    assert [r["output"] for r in records] == [r["answer"] for r in QA]
    assert "question" not in records[0] and records[0]["topic_id"] == "u/c/math"


@pytest.mark.parametrize("suffix", [".csv", ".json", ".jsonl", ".arrow"])
def test_other_file_formats(tmp_path: Path, suffix: str) -> None:
    ds = datasets.Dataset.from_list(QA)
    path = tmp_path / f"qa{suffix}"
    if suffix == ".csv":
        ds.to_csv(str(path), index=False)
    elif suffix in (".json", ".jsonl"):
        ds.to_json(str(path), lines=True)
    else:
        ds.save_to_disk(str(tmp_path / "disk"))
        path = next((tmp_path / "disk").glob("*.arrow"))
    records = read_records(path, "sft", columns=COLUMNS)
    assert [r["output"] for r in records] == [r["answer"] for r in QA]


def test_save_to_disk_dataset_dict_split(tmp_path: Path) -> None:
    dd = datasets.DatasetDict({"train": datasets.Dataset.from_list(QA[:2]), "test": datasets.Dataset.from_list(QA[2:])})
    dd.save_to_disk(str(tmp_path / "dd"))
    assert len(read_records(tmp_path / "dd", "sft", columns=COLUMNS)) == 2
    assert [r["output"] for r in read_records(tmp_path / "dd", "sft", columns=COLUMNS, split="test")] == \
        ["Plants make sugar."]
    with pytest.raises(ConfigError, match="no split 'dev' .*train, test"):
        read_records(tmp_path / "dd", "sft", columns=COLUMNS, split="dev")


def test_conversational_rows_as_trl_accepts_them(tmp_path: Path) -> None:
    messages = [{"messages": [{"role": "user", "content": r["question"]}, {"role": "assistant", "content": r["answer"]}]}
                for r in QA]
    datasets.Dataset.from_list(messages).to_parquet(str(tmp_path / "m.parquet"))
    assert read_records(tmp_path / "m.parquet", "sft")[1]["messages"][1]["content"] == QA[1]["answer"]
    prompt_completion = [{"prompt": [{"role": "user", "content": r["question"]}],
                          "completion": [{"role": "assistant", "content": r["answer"]}]} for r in QA]
    datasets.Dataset.from_list(prompt_completion).to_parquet(str(tmp_path / "pc.parquet"))
    assert len(read_records(tmp_path / "pc.parquet", "sft")) == 3
    datasets.Dataset.from_list(conversational_pairs()).save_to_disk(str(tmp_path / "prefs"))
    pairs = read_records(tmp_path / "prefs", "preference")
    assert pairs[0]["chosen"][0]["content"].startswith("Great question!")


def test_bad_rows_are_named_by_row_and_field(tmp_path: Path) -> None:
    rows = [dict(QA[0]), {**QA[1], "answer": ""}, {**QA[2], "answer": 7}]
    path = tmp_path / "bad.parquet"
    datasets.Dataset.from_list([{**r, "answer": str(r["answer"]) if r["answer"] != 7 else None} for r in rows]) \
        .to_parquet(str(path))
    with pytest.raises(DataValidationError) as info:
        read_records(path, "sft", columns=COLUMNS)
    text = str(info.value)
    assert f"{path}: row 1: field 'output': is empty" in text
    assert f"{path}: row 2: field 'output/answer/completion': missing" in text
    bad_pairs = conversational_pairs()
    bad_pairs[2]["rejected"] = [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]
    datasets.Dataset.from_list(bad_pairs).to_parquet(str(tmp_path / "p.parquet"))
    with pytest.raises(DataValidationError, match=r"row 2: field 'rejected': must be one assistant message"):
        read_records(tmp_path / "p.parquet", "preference")
    # a mapping entry naming a column the data lacks leaves the record without the field: named with its keys
    datasets.Dataset.from_list([{"q": "Why?", "a": "Because."}]).to_parquet(str(tmp_path / "qa.parquet"))
    with pytest.raises(DataValidationError, match=r"row 0: field 'instruction/question/prompt': missing \(the record "
                                                  r"has 'output' but no prompt field\)"):
        read_records(tmp_path / "qa.parquet", "sft", columns={"instruction": "query", "output": "a"})


def make_hub_cache(root: Path, repo: str, commit: str = "0" * 40) -> Path:
    """A dataset in the hub cache layout huggingface_hub reads offline (refs/main -> snapshots/<commit>)."""
    repo_dir = root / "hub" / ("datasets--" + repo.replace("/", "--"))
    snap = repo_dir / "snapshots" / commit / "data"
    snap.mkdir(parents=True)
    datasets.Dataset.from_list(QA).to_parquet(str(snap / "train-00000-of-00001.parquet"))
    datasets.Dataset.from_list(QA[:1]).to_parquet(str(snap / "test-00000-of-00001.parquet"))
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(commit)
    return root


def test_hub_dataset_from_the_local_cache(tmp_path: Path) -> None:
    home = make_hub_cache(tmp_path / "hf", "someone/qa-set")
    code = ("import json, sys; from mindprint_trainer.dataset_input import read_records; "
            "print(json.dumps([len(read_records('someone/qa-set', 'sft', columns=%r, split=s)) for s in "
            "('train', 'test')]))" % COLUMNS)
    env = {**os.environ, "HF_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [3, 1]
    missing = subprocess.run([sys.executable, "-c", "from mindprint_trainer.dataset_input import read_records; "
                              "read_records('someone/other', 'sft')"], capture_output=True, text=True, env=env)
    assert "'someone/other' is not in the local Hugging Face cache" in missing.stderr


@pytest.mark.torch
def test_parquet_trains_through_the_cli(tmp_path: Path, tiny_model_dir: Path) -> None:
    datasets.Dataset.from_list(QA).to_parquet(str(tmp_path / "qa.parquet"))
    config = tmp_path / "cfg.yaml"
    config.write_text("data:\n  columns: {instruction: question, output: answer}\n")
    res = run_mindprint("sft", "--backend", "pytorch", "--config", str(config), "--model", str(tiny_model_dir),
                        "--data", str(tmp_path / "qa.parquet"), "--set", "sft.max_steps=2", "-o", str(tmp_path / "runs"))
    assert res.returncode == 0, res.stderr
    assert "3 records from" in res.stderr
    run = only_run_dir(tmp_path / "runs")
    assert (run / "adapters" / "sft" / "adapter_model.safetensors").is_file()
    assert [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2]


@pytest.mark.torch
@pytest.mark.slow  # a second training run through the CLI
def test_save_to_disk_preferences_train_dpo_through_the_cli(tmp_path: Path, tiny_model_dir: Path) -> None:
    datasets.Dataset.from_list(conversational_pairs()).save_to_disk(str(tmp_path / "prefs"))
    res = run_mindprint("dpo", "--backend", "pytorch", "--model", str(tiny_model_dir), "--data", str(tmp_path / "prefs"),
                        "--set", "dpo.max_steps=2", "-o", str(tmp_path / "runs"))
    assert res.returncode == 0, res.stderr
    run = only_run_dir(tmp_path / "runs")
    assert (run / "adapters" / "dpo" / "adapter_model.safetensors").is_file()
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2] and "rewards/margins" in rows[0]


@pytest.mark.torch
@pytest.mark.slow  # the curriculum: topics of SFT + eval + DPO
def test_curriculum_reads_datasets(tmp_path: Path, tiny_model_dir: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    datasets.Dataset.from_list(QA[:2]).to_parquet(str(data / "sft.parquet"))
    pairs = [{**p, "topic_id": r["topic_id"]} for p, r in zip(conversational_pairs(), QA)][:2]
    datasets.Dataset.from_list(pairs).save_to_disk(str(data / "prefs"))
    config = tmp_path / "cfg.yaml"
    (data / "voice_markers.json").write_text(json.dumps({"markers": {"Great question": 1.0}}))
    config.write_text("data:\n  sft_file: sft.parquet\n  preference_file: prefs\n"
                      "  columns: {instruction: question, output: answer}\n")
    res = run_mindprint(
        "train", "--backend", "pytorch", "--config", str(config), "--model", str(tiny_model_dir), "--data-dir",
        str(data), "--set", "pipeline.sft_epochs_per_topic=1", "--set", "pipeline.dpo_steps_per_topic=1",
        "--set", "pipeline.max_retries_per_topic=0", "--set", "pipeline.eval_max_new_tokens=2",
        "--set", "pipeline.accuracy_threshold=0", "--set", "pipeline.dpo_trigger_threshold=1",
        "--set", "pipeline.merge_after_unit=false", "-o", str(tmp_path / "runs"))
    assert res.returncode == 0, res.stderr
    run = only_run_dir(tmp_path / "runs")
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert {r["topic"] for r in rows} == {"u/c/math", "u/c/geo"}
    assert {r["stage"] for r in rows} == {"sft", "dpo"}
