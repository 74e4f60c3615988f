"""PyTorch data parallel (torchrun, DDP with gloo on CPU, 2 local processes) against one process.

The gradient of one global batch must not depend on how many processes computed it: HF/TRL divide each
rank's token-loss sum by the global token count of the step (``num_items_in_batch`` gathered over the ranks,
``average_tokens_across_devices=True``) times the world size, and DDP averages the gradients. Gradients are compared (not weights after an Adam step, which is ~lr*sign(g) and would hide a
sum-vs-mean error).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from .conftest import adapter_dirs, assert_same_gradients, torchrun, run, single

pytestmark = pytest.mark.torch

TOL = 1e-5  # max |g2 - g1| relative to the largest gradient entry of the stage (fp32)


def test_two_process_gradients_equal_single_process(tiny_model_dir: Path, random_adapter: Path,
                                                    tmp_path: Path) -> None:
    one, two = tmp_path / "one.npz", tmp_path / "two.npz"
    run(single("torch_worker.py", "grads", str(tiny_model_dir), str(random_adapter), str(one)))
    run(torchrun("torch_worker.py", "grads", str(tiny_model_dir), str(random_adapter), str(two)))
    g1, g2 = np.load(one), np.load(two)
    assert int(g1["world_size"]) == 1 and int(g2["world_size"]) == 2
    assert_same_gradients(g1, g2, TOL)


def test_two_process_training_saves_one_adapter(tiny_model_dir: Path, tmp_path: Path) -> None:
    out, reports = tmp_path / "out", tmp_path / "reports"
    reports.mkdir()
    run(torchrun("torch_worker.py", "train", str(tiny_model_dir), str(out), str(reports)))
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
    assert adapter_dirs(out) == [out / "u1/c1/dpo", out / "u1/c1/sft"]
