"""The curriculum's truncation note names the longest record by file:line (row N for a dataset), as `mindprint sft`
does: in the CLI output, in summary.md and in the result metrics (#20)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.trainer.helpers import Result

pytestmark = pytest.mark.mlx

# two topics; the over-long record is the second of topic u2/c/beta and line 4 of the file
SFT = [{"instruction": "What is two plus two?", "output": "Four.", "topic_id": "u1/c/alpha"},
       {"instruction": "What is the capital of France?", "output": "Paris.", "topic_id": "u1/c/alpha"},
       {"instruction": "What do plants make?", "output": "Sugar.", "topic_id": "u2/c/beta"},
       {"instruction": "Tell me a story.", "output": "once upon a time " * 400, "topic_id": "u2/c/beta"}]
LONG_CHARS = len(SFT[3]["instruction"]) + len(SFT[3]["output"])  # its text, as the single-run note counts it
TRAIN = ["--set", "pipeline.sft_epochs_per_topic=1", "--set", "pipeline.max_retries_per_topic=0",
         "--set", "pipeline.eval_max_new_tokens=2", "--set", "pipeline.eval_max_records=1",
         "--set", "pipeline.merge_after_unit=false", "--set", "sft.max_length=32"]


def _train(run_cli: Callable[..., Result], tiny_model_dir: Path, data: Path, out: Path,
           *extra: str) -> tuple[Path, str]:
    res = run_cli("train", "-b", "mlx", "-m", str(tiny_model_dir), "--data-dir", str(data), *TRAIN, *extra,
                  "-o", str(out))
    assert res.returncode == 0, res.stderr
    [run] = [p for p in out.iterdir() if p.is_dir()]
    return run, " ".join(res.stderr.split())


def _longest_line(run: Path) -> float:
    result = json.loads((run / "pipeline_result.json").read_text())
    topics = {t["topic_id"]: t for u in result["units"] for c in u["chapters"] for t in c["topics"]}
    return float(topics["u2/c/beta"]["history"][-1]["metrics"]["sft_truncated_longest_line"])


def test_jsonl_curriculum_names_file_and_line(run_cli: Callable[..., Result], tiny_model_dir: Path,
                                              tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "sft_data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in SFT))
    run, stderr = _train(run_cli, tiny_model_dir, data, tmp_path / "runs")
    sft = data / "sft_data.jsonl"
    note = (f"{sft}: 1 record longer than max_length=32 were truncated; "
            f"longest: {sft}:4, {LONG_CHARS} characters")
    assert f"warning: {note}" in stderr, stderr
    assert note in " ".join((run / "summary.md").read_text().split())
    assert _longest_line(run) == 4.0  # the file's line, not the record's place in its topic (2)


def test_dataset_curriculum_names_the_row(run_cli: Callable[..., Result], tiny_model_dir: Path,
                                          tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    data = tmp_path / "data"
    data.mkdir()
    parquet = data / "sft.parquet"
    datasets.Dataset.from_list(SFT).to_parquet(str(parquet))
    run, stderr = _train(run_cli, tiny_model_dir, data, tmp_path / "runs", "--set", "data.sft_file=sft.parquet")
    assert f"longest: row 3, {LONG_CHARS} characters" in stderr
    assert f"longest: row 3, {LONG_CHARS} characters" in (run / "summary.md").read_text()
    assert _longest_line(run) == 4.0  # 1-based in the metrics, as for a JSONL line
