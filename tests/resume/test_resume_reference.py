"""Resume of methods with a reference model (#18): DPO and KTO with ``reference: initial_policy`` / ``model``.

Every run starts from a random non-zero PEFT adapter, so the initial policy, the base (adapters off) and the
policy at the checkpoint are three different references: a resume that computed its reference from the
checkpoint's adapter (or from the base) would change every later loss. ``initial_policy`` checkpoints store the
adapter of the run's start under ``reference/``; ``model`` checkpoints a content hash of the reference model.

Same backend: bitwise (every later loss, reward and grad norm with ``==``, the final adapter ``array_equal``).
Across backends: within the parity tolerance of tests/parity (1e-4 absolute, 2e-3 relative) of an uninterrupted
run on the second backend from the same adapter.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mindprint_interfaces import Backend, ConfigError
from mindprint_interfaces.testing import PREFERENCES
from mindprint_kit import checkpoints

from ..random_adapter import write_peft_random_adapter, write_random_adapter
from .common import Losses, adapter_arrays, backend

pytestmark = [pytest.mark.torch, pytest.mark.mlx]

BACKENDS = ["mlx", "pytorch"]


@pytest.fixture(scope="module")
def init_adapter(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_peft_random_adapter(tiny_model_dir, tmp_path_factory.mktemp("init") / "adapter")


def _cfg(out: Path, **over: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {"learning_rate": 5e-3, "max_steps": 4, "per_device_batch_size": 2, "save_steps": 2,
                           "warmup_steps": 1, "lora_dropout": 0.0, "seed": 3, "output_dir": str(out)}
    return {**cfg, **over}


def _train(be: Backend, model_dir: Path, method: str, cfg: dict[str, Any], adapter: Path, *,
           resume: Path | None = None, ref_adapter: Path | None = None) -> tuple[Any, Losses]:
    rec = Losses()
    ref = be.load_model(model_dir, adapter_path=ref_adapter) if ref_adapter is not None else None
    trainer = be.create_trainer(method, be.load_model(model_dir, adapter_path=adapter), cfg, ref,
                                callbacks=[rec])
    result = trainer.train(PREFERENCES, adapter_dir=Path(cfg["output_dir"]) / "adapter",
                           resume_from_checkpoint=resume)
    assert result.success, result.error_message
    return result, rec


def _assert_same_run(name: str, full: tuple[Any, Losses], resumed: tuple[Any, Losses], at: int) -> None:
    (result, rec), (full_result, full_rec) = resumed, full
    assert sorted(rec.steps) == list(range(at + 1, 5))
    for step, metrics in rec.steps.items():
        assert metrics == full_rec.steps[step], f"{name} step {step}"
    assert result.metrics["history"] == full_result.metrics["history"]
    mine, theirs = adapter_arrays(Path(result.adapter_path)), adapter_arrays(Path(full_result.adapter_path))
    assert mine.keys() == theirs.keys()
    for site in mine:
        for a, b in zip(mine[site], theirs[site], strict=True):
            assert np.array_equal(a, b), f"{name} {site}"


@pytest.mark.parametrize("method", ["dpo", "kto"])
@pytest.mark.parametrize("name", BACKENDS)
def test_initial_policy_reference_resumes_bitwise(name: str, method: str, tiny_model_dir: Path, init_adapter: Path,
                                                  tmp_path: Path) -> None:
    be = backend(name)
    cfg = _cfg(tmp_path / "full", per_device_batch_size=4 if method == "kto" else 2)
    full = _train(be, tiny_model_dir, method, cfg, init_adapter)
    checkpoint = tmp_path / "full" / "checkpoint-2"
    stored = checkpoints.load_checkpoint(checkpoint).reference
    assert stored is not None  # the initial policy, as the run started: the random adapter itself
    init, kept = adapter_arrays(init_adapter), adapter_arrays(stored)
    assert all(np.array_equal(a, b) for site in init for a, b in zip(init[site], kept[site], strict=True))
    resumed = _train(be, tiny_model_dir, method, {**cfg, "output_dir": str(tmp_path / "resumed")}, init_adapter,
                     resume=checkpoint)
    _assert_same_run(f"{name} {method}", full, resumed, 2)


def test_initial_policy_resume_needs_the_stored_reference(tiny_model_dir: Path, init_adapter: Path,
                                                          tmp_path: Path) -> None:
    """A checkpoint without reference/ (hand-edited, or written before it existed) is refused, not guessed."""
    import json
    import shutil

    be = backend("mlx")
    cfg = _cfg(tmp_path / "full")
    _train(be, tiny_model_dir, "dpo", cfg, init_adapter)
    checkpoint = tmp_path / "full" / "checkpoint-2"
    shutil.rmtree(checkpoint / checkpoints.REFERENCE_DIR)
    state = json.loads((checkpoint / checkpoints.STATE_FILE).read_text())
    state["files"] = {k: v for k, v in state["files"].items() if not k.startswith("reference/")}
    (checkpoint / checkpoints.STATE_FILE).write_text(json.dumps(state))
    with pytest.raises(ConfigError, match="no reference/ adapter"):
        _train(be, tiny_model_dir, "dpo", {**cfg, "output_dir": str(tmp_path / "again")}, init_adapter,
               resume=checkpoint)


@pytest.mark.parametrize("name", BACKENDS)
def test_model_reference_resumes_and_a_changed_reference_is_refused(name: str, tiny_model_dir: Path,
                                                                     init_adapter: Path, tmp_path: Path) -> None:
    be = backend(name)
    ref_a = write_random_adapter(tiny_model_dir, tmp_path / "ref-a", seed=4, a_bound=0.2, b_std=0.05)
    ref_b = write_random_adapter(tiny_model_dir, tmp_path / "ref-b", seed=5, a_bound=0.2, b_std=0.05)
    cfg = _cfg(tmp_path / "full", reference="model")
    full = _train(be, tiny_model_dir, "dpo", cfg, init_adapter, ref_adapter=ref_a)
    checkpoint = tmp_path / "full" / "checkpoint-2"
    assert checkpoints.load_checkpoint(checkpoint).reference is None  # the model is the user's: only its hash
    resumed = _train(be, tiny_model_dir, "dpo", {**cfg, "output_dir": str(tmp_path / "resumed")}, init_adapter,
                     resume=checkpoint, ref_adapter=ref_a)
    _assert_same_run(f"{name} dpo model", full, resumed, 2)
    with pytest.raises(ConfigError, match=r"another reference model \(.*adapter sha256"):
        _train(be, tiny_model_dir, "dpo", {**cfg, "output_dir": str(tmp_path / "other")}, init_adapter,
               resume=checkpoint, ref_adapter=ref_b)


@pytest.mark.parametrize(("first", "second"), [("mlx", "pytorch"), ("pytorch", "mlx")])
def test_initial_policy_cross_backend_resume(first: str, second: str, tiny_model_dir: Path, init_adapter: Path,
                                             tmp_path: Path) -> None:
    """Steps 1..2 on ``first``, 3..4 on ``second`` == 4 steps on ``second`` (one step covers the 4 pairs, so the
    data order is the same whoever draws it)."""
    cfg = _cfg(tmp_path / "a", per_device_batch_size=2, gradient_accumulation_steps=2, learning_rate=2e-3)
    _, reference = _train(backend(second), tiny_model_dir, "dpo", {**cfg, "output_dir": str(tmp_path / "ref"),
                                                                   "save_steps": 0}, init_adapter)
    _, first_rec = _train(backend(first), tiny_model_dir, "dpo", cfg, init_adapter)
    _, rec = _train(backend(second), tiny_model_dir, "dpo", {**cfg, "output_dir": str(tmp_path / "b")}, init_adapter,
                    resume=tmp_path / "a" / "checkpoint-2")
    assert sorted(rec.steps) == [3, 4]
    for key in ("loss", "rewards/chosen", "rewards/margins"):
        expected = [reference.steps[s][key] for s in range(1, 5)]
        got = [first_rec.steps[s][key] for s in (1, 2)] + [rec.steps[s][key] for s in (3, 4)]
        assert got == pytest.approx(expected, rel=2e-3, abs=1e-4), f"{first}->{second} {key} {got} vs {expected}"
