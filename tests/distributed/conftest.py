"""Fixtures for the 2-process data-parallel tests: launchers, a random (non-zero) LoRA adapter, free ports."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

SCRIPTS = Path(__file__).resolve().parent / "scripts"
BIN = Path(sys.executable).parent
LAUNCH_TIMEOUT = 420  # seconds; a hung collective must fail the test, not the CI run


def free_port(span: int = 2) -> int:
    """A port p such that p .. p+span-1 are free on 127.0.0.1 (the ring backend uses one per rank)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = int(s.getsockname()[1])
        if base + span >= 65535:
            continue
        ok = True
        for p in range(base + 1, base + span):
            with socket.socket() as t:
                try:
                    t.bind(("127.0.0.1", p))
                except OSError:
                    ok = False
        if ok:
            return base
    raise RuntimeError("no free port range")


def run(cmd: Sequence[str], *, env: dict[str, str] | None = None) -> tuple[subprocess.CompletedProcess[str], float]:
    full_env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1",
                "OPENBLAS_NUM_THREADS": "1", **(env or {})}
    start = time.perf_counter()
    proc = subprocess.run(list(cmd), cwd=str(SCRIPTS), env=full_env, capture_output=True, text=True,
                          timeout=LAUNCH_TIMEOUT)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode} after {elapsed:.0f} s\n"
                             f"--- stdout ---\n{proc.stdout[-6000:]}\n--- stderr ---\n{proc.stderr[-10000:]}")
    return proc, elapsed


def mlx_launch(script: str, *args: str, nproc: int = 2) -> list[str]:
    return [str(BIN / "mlx.launch"), "-n", str(nproc), "--backend", "ring", "--starting-port", str(free_port(nproc)),
            "--", sys.executable, str(SCRIPTS / script), *args]


def torchrun(script: str, *args: str, nproc: int = 2) -> list[str]:
    return [str(BIN / "torchrun"), "--nproc-per-node", str(nproc), "--master-addr", "127.0.0.1",
            "--master-port", str(free_port(1)), str(SCRIPTS / script), *args]


def single(script: str, *args: str) -> list[str]:
    return [sys.executable, str(SCRIPTS / script), *args]


@pytest.fixture(scope="session")
def random_adapter(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A PEFT adapter with non-zero A *and* B (a fresh adapter has B = 0, so the A gradients would all be 0)."""
    from mindprint_interfaces import AdapterConfig
    from mindprint_mlx.adapters import write_adapter

    cfg = json.loads((tiny_model_dir / "config.json").read_text())
    hidden, heads, kv = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    head_dim = hidden // heads
    outs = {"self_attn.q_proj": heads * head_dim, "self_attn.k_proj": kv * head_dim,
            "self_attn.v_proj": kv * head_dim, "self_attn.o_proj": hidden}
    rng = np.random.default_rng(7)
    r = 4
    weights = {}
    for layer in range(cfg["num_hidden_layers"]):
        for module, out in outs.items():
            fan_in = hidden if module != "self_attn.o_proj" else heads * head_dim
            a = rng.uniform(-1 / np.sqrt(fan_in), 1 / np.sqrt(fan_in), size=(r, fan_in)).astype(np.float32)
            b = rng.normal(0.0, 0.05, size=(out, r)).astype(np.float32)
            weights[(layer, module)] = (a, b)
    config = AdapterConfig(r=r, alpha=8, target_modules=("q_proj", "k_proj", "v_proj", "o_proj"))
    return write_adapter(tmp_path_factory.mktemp("adapter") / "random", config, weights,
                         base_model=str(tiny_model_dir))


def adapter_dirs(root: Path) -> list[Path]:
    """Every directory under ``root`` that holds an adapter, plus every leftover temp/old directory."""
    found = [p.parent for p in root.rglob("adapter_config.json")]
    leftovers = [p for p in root.rglob("*") if p.is_dir() and (".tmp-" in p.name or ".old-" in p.name)]
    return sorted(set(found)) + sorted(leftovers)


def assert_same_gradients(single_run: Any, multi_run: Any, tol: float) -> dict[str, float]:
    """Compare ``<stage>/<param>`` gradients of a 1-process and a 2-process run; return the measured differences.

    The tolerance is relative to the largest gradient entry of the stage (summation order differs between the
    runs, and cancellation makes small entries' relative error meaningless). The single run also carries
    ``mean_of_means/<param>`` (SFT: the per-rank token means averaged over the ranks) — it must differ clearly,
    or this batch could not tell a sum-vs-mean error from the right answer.
    """
    keys = sorted(k for k in single_run.files if "/" in k and not k.startswith("mean_of_means/"))
    assert keys == sorted(k for k in multi_run.files if "/" in k), "different parameter sets"
    measured: dict[str, float] = {}
    for stage in sorted({k.split("/", 1)[0] for k in keys}):
        params = [k for k in keys if k.startswith(stage + "/") and not k.endswith("__loss__")]
        assert params, stage
        scale = max(float(np.max(np.abs(single_run[k]))) for k in params)
        for k in params:
            assert float(np.max(np.abs(single_run[k]))) > 0, f"{k}: zero gradient, the comparison proves nothing"
        diff = max(float(np.max(np.abs(multi_run[k] - single_run[k]))) for k in params)
        measured[stage] = diff / scale
        assert diff <= tol * scale, f"{stage}: max |g2 - g1| = {diff:.3e} > {tol} * {scale:.3e}"
        l1, l2 = float(single_run[f"{stage}/__loss__"]), float(multi_run[f"{stage}/__loss__"])
        assert abs(l1 - l2) <= tol * max(1.0, abs(l1)), f"{stage}: loss {l2} != {l1}"
        if stage == "sft":
            wrong = max(float(np.max(np.abs(single_run["mean_of_means/" + k.split("/", 1)[1]] - single_run[k])))
                        for k in params)
            assert wrong > 100 * tol * scale, "the batch does not expose a sum-vs-mean error"
            measured["sft_mean_of_means"] = wrong / scale
    print("relative gradient differences (1 vs 2 processes):", measured)
    return measured
