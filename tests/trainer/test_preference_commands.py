"""``mindprint orpo|cpo|kto`` and the curriculum with another preference method, on the tiny random Llama."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.trainer.helpers import run_mindprint
from tests.trainer.test_runs_tiny import check_metrics, only_run_dir, write_curriculum

pytestmark = pytest.mark.mlx


@pytest.mark.parametrize(("method", "own"), [("orpo", "log_odds_ratio"),
                                             pytest.param("cpo", "nll_loss", marks=pytest.mark.slow),
                                             pytest.param("kto", "kl", marks=pytest.mark.slow)])
def test_method_command_trains_and_logs_its_metrics(tmp_path: Path, tiny_model_dir: Path, method: str,
                                                    own: str) -> None:
    data = write_curriculum(tmp_path)
    res = run_mindprint(method, "--backend", "mlx", "--model", str(tiny_model_dir), "--data",
                        str(data / "preference_data.jsonl"), "--set", f"{method}.max_steps=2",
                        "--set", f"{method}.per_device_batch_size=4", "-o", str(tmp_path / "runs"))
    assert res.returncode == 0, res.stderr
    run = only_run_dir(tmp_path / "runs")
    rows = check_metrics(run, {method})
    assert all(own in r for r in rows), rows
    assert (run / "adapters" / method / "adapter_config.json").is_file()


def test_kto_command_reports_bad_lines(tmp_path: Path, tiny_model_dir: Path) -> None:
    bad = tmp_path / "kto.jsonl"
    bad.write_text(json.dumps({"prompt": "q", "completion": "a", "label": True}) + "\n"
                   + json.dumps({"prompt": "q", "completion": "b", "label": "no"}) + "\n")
    res = run_mindprint("kto", "--backend", "mlx", "--model", str(tiny_model_dir), "--data", str(bad),
                        "-o", str(tmp_path / "runs"))
    assert res.returncode != 0
    assert f"{bad}:2: field 'label': must be true or false" in res.stderr


def test_curriculum_with_orpo_and_no_sft_stage(tmp_path: Path, tiny_model_dir: Path) -> None:
    data = write_curriculum(tmp_path)
    res = run_mindprint(
        "train", "--backend", "mlx", "--model", str(tiny_model_dir), "--data-dir", str(data),
        "--set", "pipeline.preference_method=orpo", "--set", "pipeline.sft_before_preference=false",
        "--set", "pipeline.dpo_steps_per_topic=2", "--set", "pipeline.max_retries_per_topic=0",
        "--set", "pipeline.eval_max_new_tokens=4", "--set", "pipeline.merge_after_unit=false",
        "-o", str(tmp_path / "runs"))
    assert res.returncode == 0, res.stderr
    run = only_run_dir(tmp_path / "runs")
    rows = check_metrics(run, {"orpo"})  # no SFT stage ran; the preference stage is named after its method
    assert {r["topic"] for r in rows} == {"u1/c/alpha", "u2/c/beta"}
    assert all("log_odds_ratio" in r and "nll_loss" in r for r in rows)
    summary = (run / "summary.md").read_text()
    assert "| topic | status | accuracy | voice | ORPO | attempts | time (s) |" in summary
    assert "| DPO |" not in summary
    assert (run / "loss.png").is_file() and (run / "rewards.png").is_file()


def test_sft_before_preference_false_needs_a_reference_free_method(tmp_path: Path, tiny_model_dir: Path) -> None:
    data = write_curriculum(tmp_path)
    res = run_mindprint("train", "--backend", "mlx", "--model", str(tiny_model_dir), "--data-dir", str(data),
                        "--set", "pipeline.preference_method=kto", "--set", "pipeline.sft_before_preference=false",
                        "-o", str(tmp_path / "runs"))
    assert res.returncode != 0
    assert "sft_before_preference" in res.stderr


def test_demo_takes_set_overrides() -> None:
    from mindprint_trainer.cli import build_parser
    from mindprint_trainer.demo import demo_config

    args = build_parser().parse_args(["demo", "--quick", "--set", "pipeline.preference_method=orpo",
                                      "--set", "orpo.beta=0.25"])
    cfg = demo_config(args)
    assert cfg.pipeline.preference_method == "orpo"
    assert cfg.orpo.beta == 0.25
    assert cfg.pipeline.dpo_steps_per_topic == 5 and cfg.pipeline.eval_max_records == 1  # --quick still applies



def _tiny_as_bundled_model(tiny_model_dir: Path, tmp_path: Path) -> Path:
    """The tiny Llama where ``mindprint demo`` looks for its converted SmolLM2 (MINDPRINT_SMOLLM2_DIR): the demo's
    own code path end to end, in seconds instead of minutes."""
    import shutil

    from mindprint_trainer.bundled_model import FORMAT_VERSION, MARKER

    out = tmp_path / "bundled"
    shutil.copytree(tiny_model_dir, out)
    (out / MARKER).write_text(json.dumps({"format": FORMAT_VERSION}))
    return out


@pytest.mark.parametrize("backend", [pytest.param("pytorch", marks=pytest.mark.torch), "mlx"])
def test_demo_quick_with_orpo_runs_to_completion(tmp_path: Path, tiny_model_dir: Path, backend: str) -> None:
    bundled = _tiny_as_bundled_model(tiny_model_dir, tmp_path)
    res = run_mindprint("demo", "--quick", "--backend", backend, "-o", str(tmp_path / "runs"),
                        "--set", "pipeline.preference_method=orpo", "--set", "pipeline.sft_before_preference=false",
                        "--set", "pipeline.dpo_steps_per_topic=1", "--set", "pipeline.eval_max_new_tokens=2",
                        "--set", "generation.max_new_tokens=2", env={"MINDPRINT_SMOLLM2_DIR": str(bundled)})
    assert res.returncode == 0, res.stderr[-3000:]
    assert "after (ORPO)" in res.stdout and "topics passed" in res.stdout
    run = only_run_dir(tmp_path / "runs")
    rows = check_metrics(run, {"orpo"})
    assert len({r["topic"] for r in rows}) == 4  # every demo topic trained its ORPO stage
    assert all("log_odds_ratio" in r for r in rows)
    config = (run / "config.yaml").read_text()
    assert "preference_method: orpo" in config
    summary = (run / "summary.md").read_text()
    assert "| ORPO |" in summary and "## Before / after" in summary
    assert (run / "rewards.png").is_file()
