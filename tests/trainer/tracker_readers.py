"""Reading the trackers' logs back with each tool's own reader, and a real ``mlflow server`` for the tests.

* TensorBoard: tensorboard's ``EventAccumulator``;
* MLflow: ``MlflowClient`` against ``mlflow server`` (sqlite store) started here on 127.0.0.1;
* W&B: the offline run's ``.wandb`` file. wandb (0.31) ships no Python reader for it any more (its Go core
  reads it), so the records are framed here by the LevelDB log layout the file uses (7-byte file header,
  32 KiB blocks, records of crc32/length/type) and decoded with wandb's own protobuf ``Record``; the
  crc is checked, so a misread fails.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.request
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

Series = dict[str, list[tuple[int, float]]]


def metrics_series(rows: list[dict[str, Any]]) -> Series:
    """metrics.jsonl rows as tracker series, through the same key rule the loggers use."""
    from mindprint_trainer.trackers import row_metrics

    out: Series = {}
    for row in rows:
        metrics, step = row_metrics(row)
        for key, value in metrics.items():
            out.setdefault(key, []).append((step, value))
    return out


def read_metrics_jsonl(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]


# -- TensorBoard -----------------------------------------------------------------------------------


def tensorboard_series(log_dir: Path) -> tuple[Series, list[str], list[str]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    tags = acc.Tags()
    series = {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in tags["scalars"]}
    return series, list(tags["images"]), list(tags["tensors"])


# -- MLflow ----------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def mlflow_server(root: Path, *, timeout: float = 120.0) -> Iterator[str]:
    """``mlflow server`` on 127.0.0.1 with a sqlite store; yields its URI; always stopped."""
    port = _free_port()
    mlflow_exe = Path(sys.executable).parent / "mlflow"
    log = (root / "mlflow-server.log").open("w")
    proc = subprocess.Popen(
        [str(mlflow_exe), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}", "--artifacts-destination", str(root / "artifacts")],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=root)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited ({proc.returncode}): {(root / 'mlflow-server.log').read_text()}")
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"mlflow server not up after {timeout} s: {(root / 'mlflow-server.log').read_text()}")
            time.sleep(0.5)
        yield uri
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=20)
        log.close()


def mlflow_run(uri: str, experiment: str) -> tuple[Any, Series, set[str], dict[str, str]]:
    """The one run of ``experiment``: (run, series, artefact names, params)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no MLflow experiment {experiment!r}"
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1, runs
    run = runs[0]
    series = {key: sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))
              for key in run.data.metrics}
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    return run, series, artifacts, dict(run.data.params)


# -- W&B -------------------------------------------------------------------------------------------

BLOCK = 32768
HEADER = struct.Struct("<4sHB")  # ":W&B", magic 0xBEE1, version
RECORD = struct.Struct("<IHB")  # crc32 of type+payload, length, type (1 full, 2 first, 3 middle, 4 last)


def wandb_records(path: Path) -> list[Any]:
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    ident, magic, version = HEADER.unpack_from(data, 0)
    assert (ident, magic, version) == (b":W&B", 0xBEE1, 0), (ident, magic, version)
    pos, pending, out = HEADER.size, b"", []
    while pos + RECORD.size <= len(data):
        room = BLOCK - pos % BLOCK
        if room < RECORD.size:  # the block's tail is padding
            pos += room
            continue
        crc, length, kind = RECORD.unpack_from(data, pos)
        if length == 0 and kind == 0:
            pos += room  # zero padding
            continue
        payload = data[pos + RECORD.size: pos + RECORD.size + length]
        assert zlib.crc32(bytes([kind]) + payload) & 0xFFFFFFFF == crc, f"bad crc at {pos}"
        pos += RECORD.size + length
        pending = payload if kind in (1, 2) else pending + payload
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(pending)
            out.append(record)
            pending = b""
    return out


def wandb_series(run_root: Path) -> tuple[Series, dict[str, Any], Path]:
    """History series keyed as logged (x = each key's ``<prefix>/step``) and the run's config."""
    files = sorted(run_root.glob("wandb/offline-run-*/run-*.wandb"))
    assert len(files) == 1, files
    series: Series = {}
    config: dict[str, Any] = {}
    for record in wandb_records(files[0]):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            items = {("/".join(i.nested_key) if i.nested_key else i.key): json.loads(i.value_json)
                     for i in record.history.item}
            for key, value in items.items():
                if key.startswith("_") or key.endswith("/step"):
                    continue
                step = items[key.rpartition("/")[0] + "/step"]
                series.setdefault(key, []).append((int(step), float(value)))
        elif kind in ("config", "run"):
            updates = record.config.update if kind == "config" else record.run.config.update
            for item in updates:
                config[item.key] = json.loads(item.value_json)
    return series, config, files[0].parent
