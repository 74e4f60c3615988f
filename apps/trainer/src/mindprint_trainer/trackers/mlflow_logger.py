"""MLflow: one MLflow run per mindprint run, through ``MlflowClient`` (a tracking server, sqlite or a file store)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

PARAM_BATCH = 100  # MLflow's limit of params per log_batch call
METRIC_BATCH = 1000  # and of metrics
PARAM_VALUE_CHARS = 6000


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = str(value)[:PARAM_VALUE_CHARS]
    return out


class MLflowLogger:
    """The config as params (``sft.learning_rate`` ...), metrics with their step, files as run artefacts."""

    def __init__(self, tracking_uri: str | None = None, experiment: str = "mindprint") -> None:
        self.tracking_uri = tracking_uri  # None: MLFLOW_TRACKING_URI or MLflow's default
        self.experiment = experiment
        self.client: Any = None
        self.run_id = ""

    def start(self, run_name: str, config: Mapping[str, Any], run_dir: Path) -> None:
        self.client = MlflowClient(tracking_uri=self.tracking_uri)
        found = self.client.get_experiment_by_name(self.experiment)
        experiment_id = found.experiment_id if found is not None else self.client.create_experiment(self.experiment)
        run = self.client.create_run(experiment_id, run_name=run_name, tags={"mindprint.run_dir": str(run_dir)})
        self.run_id = run.info.run_id
        params = [Param(k, v) for k, v in flatten(config).items()]
        for i in range(0, len(params), PARAM_BATCH):
            self.client.log_batch(self.run_id, params=params[i:i + PARAM_BATCH])

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        rows = [Metric(key, value, now, step) for key, value in metrics.items()]
        for i in range(0, len(rows), METRIC_BATCH):
            self.client.log_batch(self.run_id, metrics=rows[i:i + METRIC_BATCH])

    def log_artifact(self, path: Path) -> None:
        self.client.log_artifact(self.run_id, str(path))

    def finish(self, success: bool = True) -> None:
        self.client.set_terminated(self.run_id, "FINISHED" if success else "FAILED")
