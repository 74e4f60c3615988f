"""Data parallel on 2 local processes against one process, the same tests for both backends.

- mlx: ``mlx.launch`` (mx.distributed, ring backend). Each rank sums the token losses of its shard; the sums,
  token counts and gradients are all_sum'ed and divided by the global token count.
- pytorch: ``torchrun`` (DDP, gloo on CPU). HF/TRL divide each rank's token-loss sum by the global token count
  of the step (``num_items_in_batch`` gathered over the ranks, ``average_tokens_across_devices=True``) times
  the world size, and DDP averages the gradients.

The gradient of one global batch must not depend on how many processes computed it. Gradients are compared
(not weights after an Adam step, which is ~lr*sign(g) and would hide a sum-vs-mean error).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from .conftest import adapter_dirs, assert_same_gradients, mlx_launch, run, single, torchrun

BACKENDS = [pytest.param("mlx", mlx_launch, marks=pytest.mark.mlx, id="mlx"),
            pytest.param("pytorch", torchrun, marks=pytest.mark.torch, id="pytorch")]

Launcher = Callable[..., list[str]]
TOL = 1e-5  # max |g2 - g1| relative to the largest gradient entry of the stage (fp32)


@pytest.mark.parametrize(("backend", "launch"), BACKENDS)
def test_two_process_gradients_equal_single_process(backend: str, launch: Launcher, tiny_model_dir: Path,
                                                    random_adapter: Path, tmp_path: Path) -> None:
    one, two = tmp_path / "one.npz", tmp_path / "two.npz"
    run(single("worker.py", backend, "grads", str(tiny_model_dir), str(random_adapter), str(one)))
    run(launch("worker.py", backend, "grads", str(tiny_model_dir), str(random_adapter), str(two)))
    g1, g2 = np.load(one), np.load(two)
    assert int(g1["world_size"]) == 1 and int(g2["world_size"]) == 2
    assert_same_gradients(g1, g2, TOL)


@pytest.mark.parametrize(("backend", "launch"), BACKENDS)
def test_two_process_training_saves_one_adapter(backend: str, launch: Launcher, tiny_model_dir: Path,
                                                tmp_path: Path) -> None:
    out, reports = tmp_path / "out", tmp_path / "reports"
    reports.mkdir()
    run(launch("worker.py", backend, "train", str(tiny_model_dir), str(out), str(reports)))
    r0 = json.loads((reports / "rank0.json").read_text())
    r1 = json.loads((reports / "rank1.json").read_text())
    assert r0["world_size"] == 2
    for r in (r0, r1):
        for stage in ("sft", "dpo"):
            assert r[stage]["success"], r[stage]["error"]
        assert r["sft"]["loss"] == pytest.approx(r0["sft"]["loss"], abs=1e-6)  # every rank reports the global loss
    assert r0["steps"] == [1, 2, 3, 1, 2, 3] and r1["steps"] == []  # only rank 0 calls the user's callbacks
    assert r1["saves"] == [] and len(r0["saves"]) == 4  # checkpoint at step 2 + final, per stage
    assert r0["sft"]["samples"] == 4  # 3 steps x 2 ranks x 1 example cover all 4 examples (global)
    # the final adapters, and each stage's full-state checkpoint of step 2 (written once, by rank 0); DPO's
    # checkpoint carries its reference (the initial policy's adapter), so a resume scores against the same one
    assert adapter_dirs(out) == [out / "u1/c1/dpo", out / "u1/c1/dpo-checkpoints/checkpoint-2",
                                 out / "u1/c1/dpo-checkpoints/checkpoint-2/reference", out / "u1/c1/sft",
                                 out / "u1/c1/sft-checkpoints/checkpoint-2"]
