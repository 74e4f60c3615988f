"""Experiment trackers (report_to): each tracker's logs, read back with its own reader, equal metrics.jsonl.

The CLI runs train the tiny random Llama; TensorBoard is read by tensorboard's EventAccumulator, MLflow by
MlflowClient against a real ``mlflow server`` (sqlite store) started by the test, W&B from its offline
``.wandb`` file (see ``tracker_readers``).
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from mindprint_interfaces import ConfigError
from mindprint_interfaces.metric_loggers import (
    LoggerSpec,
    LoggerUnavailableError,
    MetricsLogger,
    load_metrics_logger,
    metric_key,
    register_metrics_logger,
)
from mindprint_trainer.config import load_config
from mindprint_trainer.trackers import RunTrackers, row_metrics
from tests.trainer.helpers import run_mindprint
from tests.trainer.test_runs_tiny import only_run_dir, write_curriculum
from tests.trainer.tracker_readers import (
    Series,
    metrics_series,
    mlflow_run,
    mlflow_server,
    read_metrics_jsonl,
    tensorboard_series,
    wandb_series,
)


def assert_same(got: Series, want: Series, what: str) -> None:
    assert sorted(got) == sorted(want), f"{what}: keys differ"
    for key, points in want.items():
        have = got[key]
        assert [s for s, _ in have] == [s for s, _ in points], f"{what} {key}: steps differ"
        for (_, a), (_, b) in zip(have, points):
            assert math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9), f"{what} {key}: {a} != {b}"


# -- fast: the protocol, the registry and the config ----------------------------------------------


def test_metric_keys_and_rows() -> None:
    assert metric_key("sft", None, "loss") == "sft/loss"
    assert metric_key("dpo", "u1/c/alpha", "rewards/margins") == "dpo/u1/c/alpha/rewards/margins"
    assert metric_key("sft", "a:b", "loss") == "sft/a_b/loss"
    row = {"stage": "sft", "topic": None, "step": 3, "loss": 1.5, "lr": 1e-4, "grad_norm": None, "timestamp": 1.0,
           "flag": True}
    assert row_metrics(row) == ({"sft/loss": 1.5, "sft/lr": 1e-4}, 3)


def test_unknown_and_uninstalled_trackers_are_named() -> None:
    with pytest.raises(ConfigError, match="unknown tracker 'tensorbord'.*did you mean \"tensorboard\""):
        load_config(None, extra={"report_to": ["tensorbord"]})
    assert load_config(None, extra={"report_to": ["TensorBoard", "none", "tensorboard"]}).report_to == ("tensorboard",)
    with pytest.raises(ConfigError, match="unknown metrics logger 'nope'"):
        load_metrics_logger("nope")
    register_metrics_logger(LoggerSpec("needs-missing", "mindprint_no_such_module.x:Logger", "no-such-lib",
                                       "mindprint-trainer[no-such-extra]"))
    with pytest.raises(LoggerUnavailableError, match=r"needs no-such-lib .*pip install 'mindprint-trainer\[no-such"):
        load_metrics_logger("needs-missing")


@pytest.mark.parametrize("name", ["tensorboard", pytest.param("mlflow", marks=pytest.mark.slow),
                                  pytest.param("wandb", marks=pytest.mark.slow)])  # mlflow/wandb: ~15 s imports
def test_builtin_loggers_satisfy_the_protocol(name: str) -> None:
    for name in (name,):
        assert issubclass(load_metrics_logger(name), MetricsLogger)


def test_tensorboard_logger_direct(tmp_path: Path) -> None:
    trackers = RunTrackers.open(["tensorboard"], {}, run_name="r", config={"sft": {"learning_rate": 1e-4}},
                                run_dir=tmp_path)
    rows = [{"stage": "sft", "topic": "u/c/t", "step": s, "loss": 3.0 - s, "timestamp": 0.0} for s in (1, 2, 3)]
    for row in rows:
        trackers.log_row(row)
    trackers.finish()
    series, _, tensors = tensorboard_series(tmp_path / "tensorboard")
    assert_same(series, metrics_series(rows), "tensorboard")
    assert "config/text_summary" in tensors


@pytest.mark.torch
def test_unreachable_tracker_stops_before_training(tmp_path: Path, tiny_model_dir: Path) -> None:
    """A tracker that cannot start its run fails the command with one clear line, before any model work."""
    data = write_curriculum(tmp_path)
    res = run_mindprint("sft", "--backend", "pytorch", "--model", str(tiny_model_dir), "--data",
                        str(data / "sft_data.jsonl"), "-o", str(tmp_path / "runs"), "--report-to", "tensorboard",
                        "--set", f"tracking.tensorboard_dir={data / 'sft_data.jsonl'}")  # a file, not a directory
    assert res.returncode == 1, res.stderr
    assert "error: report_to: tensorboard could not start a run" in res.stderr
    assert "SFT on pytorch" not in res.stderr


# -- the CLI on the tiny model ---------------------------------------------------------------------


def _check_all(run: Path, uri: str, experiment: str) -> list[dict[str, object]]:
    rows = read_metrics_jsonl(run)
    want = metrics_series(rows)
    assert want and all(len(points) == len(rows) for key, points in want.items() if key.endswith("/loss"))
    tb, images, _ = tensorboard_series(run / "tensorboard")
    assert_same(tb, want, "tensorboard")
    assert "loss.png" in images
    mrun, ml, artifacts, params = mlflow_run(uri, experiment)
    assert_same(ml, want, "mlflow")
    assert mrun.info.status == "FINISHED"
    assert {"metrics.jsonl", "config.yaml", "summary.md", "loss.png"} <= artifacts
    assert params["sft.max_steps"] == "3"
    wb, config, wdir = wandb_series(run)
    assert_same(wb, want, "wandb")
    assert config["sft"]["max_steps"] == 3
    assert (wdir / "files" / "metrics.jsonl").read_text() == (run / "metrics.jsonl").read_text()
    return rows


@pytest.mark.slow  # an mlflow server, wandb's service and a training run: minutes on a busy 2-core box
@pytest.mark.parametrize("backend", [pytest.param("pytorch", marks=pytest.mark.torch),
                                     pytest.param("mlx", marks=pytest.mark.mlx)])
def test_sft_reports_to_all_three(tmp_path: Path, tiny_model_dir: Path, backend: str) -> None:
    data = write_curriculum(tmp_path)
    with mlflow_server(tmp_path) as uri:
        res = run_mindprint("sft", "--backend", backend, "--model", str(tiny_model_dir), "--data",
                            str(data / "sft_data.jsonl"), "--set", "sft.max_steps=3", "-o", str(tmp_path / "runs"),
                            "--report-to", "tensorboard,mlflow", "--report-to", "wandb",
                            "--set", f"tracking.mlflow_tracking_uri={uri}", "--set", f"tracking.mlflow_experiment={backend}",
                            "--set", "tracking.wandb_mode=offline", env={"WANDB_DIR": str(tmp_path / "wandb-home")})
        assert res.returncode == 0, res.stderr
        run = only_run_dir(tmp_path / "runs")
        rows = _check_all(run, uri, backend)
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert "reporting to: tensorboard, mlflow, wandb" in res.stderr


@pytest.mark.torch
@pytest.mark.slow  # the curriculum: two topics of SFT + eval + DPO
def test_curriculum_reports_stage_and_topic(tmp_path: Path, tiny_model_dir: Path) -> None:
    data = write_curriculum(tmp_path)
    config = tmp_path / "cfg.yaml"
    config.write_text("report_to: [tensorboard]\n")
    res = run_mindprint(
        "train", "--backend", "pytorch", "--config", str(config), "--model", str(tiny_model_dir), "--data-dir",
        str(data), "--set", "data.quiz_file=quiz.jsonl", "--set", "pipeline.sft_epochs_per_topic=1",
        "--set", "pipeline.dpo_steps_per_topic=1", "--set", "pipeline.max_retries_per_topic=0",
        "--set", "pipeline.eval_max_new_tokens=4", "--set", "pipeline.accuracy_threshold=0",
        "--set", "pipeline.dpo_trigger_threshold=1", "--set", "pipeline.merge_after_unit=false",
        "-o", str(tmp_path / "runs"))
    assert res.returncode == 0, res.stderr
    run = only_run_dir(tmp_path / "runs")
    rows = read_metrics_jsonl(run)
    want = metrics_series(rows)
    assert {"sft/u1/c/alpha/loss", "sft/u2/c/beta/loss", "dpo/u1/c/alpha/loss", "dpo/u2/c/beta/rewards/margins"} \
        <= set(want)
    tb, _, _ = tensorboard_series(run / "tensorboard")
    assert_same(tb, want, "tensorboard")
