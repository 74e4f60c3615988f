"""Full-state checkpoints and resume (#18) on the tiny model, both backends.

Same backend: a run resumed from its checkpoint-k reproduces the uninterrupted run **bitwise** on CPU (every
later loss and grad norm compared with ``==``, the final adapter tensors with ``array_equal``), with LoRA
dropout on (so the RNG state matters) and 3 examples per epoch in batches of 2 (so the data order matters),
from a mid-epoch and from an epoch-boundary checkpoint. A weights-only continuation (what mlx-lm offers) is
shown to differ, so the comparison can fail.

Across backends (dropout off: the two backends' dropout masks are different random streams): steps 1..k on
one backend, k+1..N on the other, against an uninterrupted run on the second backend from the same initial
adapter, within the parity tolerance of tests/parity (1e-4 absolute on the tiny model, 2e-3 relative).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mindprint_interfaces import ConfigError
from mindprint_kit import checkpoints

from ..random_adapter import write_peft_random_adapter
from .common import RECORDS, adapter_arrays, backend, run

pytestmark = [pytest.mark.torch, pytest.mark.mlx]

BACKENDS = ["mlx", "pytorch"]


def _cfg(out: Path, **over: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {"learning_rate": 5e-3, "max_steps": 7, "per_device_batch_size": 2, "save_steps": 2,
                           "warmup_steps": 2, "lora_dropout": 0.1, "seed": 5, "output_dir": str(out)}
    return {**cfg, **over}


@pytest.fixture(scope="module")
def uninterrupted(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in BACKENDS:
        root = tmp_path_factory.mktemp(f"run-{name}")
        result, rec = run(backend(name), tiny_model_dir, _cfg(root))
        out[name] = (root, result, rec)
    return out


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("at", [4, 6])  # 6 records in batches of 2: 3 steps per epoch; 4 is mid-epoch, 6 a boundary
def test_same_backend_resume_is_bitwise(name: str, at: int, uninterrupted: dict[str, Any], tiny_model_dir: Path,
                                        tmp_path: Path) -> None:
    root, full, full_rec = uninterrupted[name]
    checkpoint = root / f"checkpoint-{at}"
    state = json.loads((checkpoint / checkpoints.STATE_FILE).read_text())
    assert state["global_step"] == at and state["data_order"]["steps_per_epoch"] == 3
    result, rec = run(backend(name), tiny_model_dir, _cfg(tmp_path / "resumed"), resume=checkpoint)
    assert sorted(rec.steps) == list(range(at + 1, 8))
    for step, metrics in rec.steps.items():
        for key in ("loss", "grad_norm", "learning_rate"):
            assert metrics[key] == full_rec.steps[step][key], f"{name} step {step} {key}"
    assert result.metrics["history"] == full.metrics["history"]
    assert result.metrics["global_step"] == 7
    mine, theirs = adapter_arrays(Path(result.adapter_path)), adapter_arrays(Path(full.adapter_path))
    assert mine.keys() == theirs.keys()
    for site in mine:
        for a, b in zip(mine[site], theirs[site], strict=True):
            assert np.array_equal(a, b), f"{name} {site}"


@pytest.mark.parametrize("name", BACKENDS)
def test_weights_only_continuation_differs(name: str, uninterrupted: dict[str, Any], tiny_model_dir: Path,
                                           tmp_path: Path) -> None:
    """The negative control: the adapter of checkpoint-4 alone (fresh optimizer, schedule, order) is another run."""
    root, _, full_rec = uninterrupted[name]
    _, rec = run(backend(name), tiny_model_dir, _cfg(tmp_path, max_steps=3, save_steps=0),
                 adapter_path=root / "checkpoint-4")
    later = [full_rec.steps[s]["loss"] for s in range(5, 8)]
    assert max(abs(a - b) for a, b in zip([rec.steps[s]["loss"] for s in range(1, 4)], later, strict=True)) > 1e-4


def test_checkpoint_layout_is_backend_neutral(uninterrupted: dict[str, Any]) -> None:
    """Both backends write the same files, the same optimizer keys (PEFT names) and shapes."""
    layouts = []
    for name in BACKENDS:
        checkpoint = checkpoints.load_checkpoint(uninterrupted[name][0] / "checkpoint-4")
        files = sorted(p.name for p in checkpoint.path.iterdir())
        moments = {k: {kind: v.shape for kind, v in m.items()} for k, m in checkpoint.data.moments.items()}
        assert checkpoint.data.optimizer_step == 4
        assert all(".lora_A.default.weight" in k or ".lora_B.default.weight" in k for k in moments)
        trainer_state = json.loads((checkpoint.path / "trainer_state.json").read_text())
        assert trainer_state["global_step"] == 4 and [h["step"] for h in trainer_state["log_history"]] == [1, 2, 3, 4]
        layouts.append((files, moments, checkpoint.data.fingerprint))
    assert layouts[0] == layouts[1]


def test_hf_trainer_state_reads_our_trainer_state(uninterrupted: dict[str, Any]) -> None:
    from transformers.trainer_callback import TrainerState

    for name in BACKENDS:
        state = TrainerState.load_from_json(str(uninterrupted[name][0] / "checkpoint-4" / "trainer_state.json"))
        assert state.global_step == 4 and len(state.log_history) == 4


def test_save_total_limit_keeps_the_newest(tiny_model_dir: Path, tmp_path: Path) -> None:
    run(backend("mlx"), tiny_model_dir, _cfg(tmp_path, max_steps=5, save_steps=1, save_total_limit=2))
    assert [s for s, _ in checkpoints.checkpoint_dirs(tmp_path)] == [3, 4]
    assert checkpoints.latest_checkpoint(tmp_path) == tmp_path / "checkpoint-4"


def test_resume_true_takes_the_newest_complete_checkpoint(uninterrupted: dict[str, Any], tiny_model_dir: Path,
                                                          tmp_path: Path) -> None:
    root, full, _ = uninterrupted["mlx"]
    for at in (4, 6):
        shutil.copytree(root / f"checkpoint-{at}", tmp_path / f"checkpoint-{at}")
    (tmp_path / "checkpoint-6" / "optimizer.safetensors").write_bytes(b"half")  # an unfinished copy
    with pytest.raises(ConfigError, match="optimizer.safetensors is missing or differs"):
        run(backend("mlx"), tiny_model_dir, _cfg(tmp_path), resume=tmp_path / "checkpoint-6")
    result, rec = run(backend("mlx"), tiny_model_dir, _cfg(tmp_path), resume=True)
    assert sorted(rec.steps) == [5, 6, 7]
    assert result.metrics["history"] == full.metrics["history"]


# -- refusals ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("change", "message"), [
    ({"lora_r": 4}, r"LoRA r 8 \(checkpoint\) vs 4"),
    ({"target_modules": ["q_proj", "v_proj"]}, r"LoRA target_modules"),
    ({"learning_rate": 1e-3}, r"training key learning_rate: 0.005 \(checkpoint\) vs 0.001"),
    ({"per_device_batch_size": 3}, r"training key per_device_batch_size"),
    ({"completion_only_loss": False}, r"changed data: the tokenized training set differs"),
])
def test_refuses_another_run(change: dict[str, Any], message: str, uninterrupted: dict[str, Any],
                             tiny_model_dir: Path, tmp_path: Path) -> None:
    checkpoint = uninterrupted["mlx"][0] / "checkpoint-4"
    with pytest.raises(ConfigError, match=message):
        run(backend("mlx"), tiny_model_dir, _cfg(tmp_path, **change), resume=checkpoint)


def test_refuses_changed_data(uninterrupted: dict[str, Any], tiny_model_dir: Path, tmp_path: Path) -> None:
    checkpoint = uninterrupted["pytorch"][0] / "checkpoint-4"
    changed = [*RECORDS[:-1], {"instruction": "What do bees make?", "output": "Bees make honey."}]
    with pytest.raises(ConfigError, match=r"changed data: the tokenized training set differs \(6 examples"):
        run(backend("pytorch"), tiny_model_dir, _cfg(tmp_path), resume=checkpoint, records=changed)


def test_refuses_another_base(uninterrupted: dict[str, Any], tmp_path: Path) -> None:
    from tiny_model import build_tiny_llama

    other = build_tiny_llama(tmp_path / "other-base", seed=1)
    for name in BACKENDS:
        checkpoint = uninterrupted[name][0] / "checkpoint-4"
        with pytest.raises(ConfigError, match=r"another base model \(the weights it modifies differ"):
            run(backend(name), other, _cfg(tmp_path / name), resume=checkpoint)


def test_free_keys_may_change(uninterrupted: dict[str, Any], tiny_model_dir: Path, tmp_path: Path) -> None:
    """output_dir, logging and saving settings: not part of what is trained (the resumed run is still bitwise)."""
    root, full, _ = uninterrupted["mlx"]
    cfg = _cfg(tmp_path / "elsewhere", logging_steps=2, save_steps=3, save_total_limit=1)
    result, _ = run(backend("mlx"), tiny_model_dir, cfg, resume=root / "checkpoint-4")
    assert result.metrics["history"] == full.metrics["history"]
    assert [s for s, _ in checkpoints.checkpoint_dirs(tmp_path / "elsewhere")] == [6]


def test_activation_checkpointing_counts_when_dropout_is_on(uninterrupted: dict[str, Any], tiny_model_dir: Path,
                                                           tmp_path: Path) -> None:
    """Recomputing a layer redraws its dropout mask, so with lora_dropout > 0 it changes what is trained."""
    with pytest.raises(ConfigError, match="training key gradient_checkpointing: false"):
        run(backend("mlx"), tiny_model_dir, _cfg(tmp_path, gradient_checkpointing=True),
            resume=uninterrupted["mlx"][0] / "checkpoint-4")


@pytest.mark.parametrize("name", BACKENDS)
def test_a_run_killed_after_its_last_checkpoint_resumes_to_its_result(name: str, tiny_model_dir: Path,
                                                                      tmp_path: Path) -> None:
    """A kill between the last step's checkpoint and the final save (the fault probe hit it on torch, which
    saves at the last step too; MLX does not): resume has no step left to train, so it returns that checkpoint
    as the run's result - the same adapter and history, on either backend."""
    full, _ = run(backend("pytorch"), tiny_model_dir, _cfg(tmp_path / "full", max_steps=2))
    last = tmp_path / "full" / "checkpoint-2"
    assert last.is_dir()
    result, rec = run(backend(name), tiny_model_dir, _cfg(tmp_path / "resumed", max_steps=2), resume=last)
    assert result.success and not rec.steps  # nothing trained again
    assert result.metrics["history"] == full.metrics["history"] and result.metrics["global_step"] == 2
    mine, theirs = adapter_arrays(Path(result.adapter_path)), adapter_arrays(Path(full.adapter_path))
    assert mine.keys() == theirs.keys()
    for site in mine:
        for a, b in zip(mine[site], theirs[site], strict=True):
            assert np.array_equal(a, b), f"{name} {site}"


def test_torch_resume_hooks_must_be_taken() -> None:
    from mindprint_interfaces import TrainingError
    from mindprint_torch._compat import transformers as compat

    hooks = compat.ResumeHooks(taken={compat.LOAD_MODEL, compat.LOAD_OPTIMIZER})
    with pytest.raises(TrainingError, match="did not call _load_rng_state"):
        hooks.require_taken()


def test_torch_resume_takes_every_hook(uninterrupted: dict[str, Any], tiny_model_dir: Path, tmp_path: Path) -> None:
    """transformers' train loop still calls the three methods we replace (else the resume would be silent)."""
    from mindprint_torch._compat import transformers as compat

    be = backend("pytorch")
    trainer: Any = be.create_sft_trainer(be.load_model(tiny_model_dir), _cfg(tmp_path))
    assert trainer.train(RECORDS, resume_from_checkpoint=uninterrupted["pytorch"][0] / "checkpoint-4").success
    assert trainer.resume_hooks.taken == set(compat.HOOKS)


# -- across backends -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("first", "second"), [("mlx", "pytorch"), ("pytorch", "mlx")])
def test_cross_backend_resume(first: str, second: str, tiny_model_dir: Path, tmp_path: Path) -> None:
    """Steps 1..3 on ``first``, 4..6 on ``second`` == 6 steps on ``second`` (parity tolerance).

    Both start from the same PEFT adapter with random A and B; one optimizer step covers the whole set
    (6 examples, batch 3 x 2 accumulation) so the data order is the same whoever draws it."""
    init = tmp_path / "init"
    write_peft_random_adapter(tiny_model_dir, init)
    cfg = _cfg(tmp_path / "a", max_steps=6, per_device_batch_size=3, gradient_accumulation_steps=2, lora_dropout=0.0,
               learning_rate=1e-3, save_steps=3)
    _, reference = run(backend(second), tiny_model_dir, {**cfg, "output_dir": str(tmp_path / "ref"), "save_steps": 0},
                       adapter_path=init)
    _, first_rec = run(backend(first), tiny_model_dir, cfg, adapter_path=init)
    result, rec = run(backend(second), tiny_model_dir, {**cfg, "output_dir": str(tmp_path / "b")},
                      resume=tmp_path / "a" / "checkpoint-3")
    assert sorted(rec.steps) == [4, 5, 6]
    expected = [reference.steps[s]["loss"] for s in range(1, 7)]
    got = [first_rec.steps[s]["loss"] for s in (1, 2, 3)] + [rec.steps[s]["loss"] for s in (4, 5, 6)]
    assert got == pytest.approx(expected, rel=2e-3, abs=1e-4), f"{first}->{second} {got}\n{second} {expected}"
    # the moments matter: the same adapter with a fresh optimizer (what a weights-only resume does) is further off
    _, fresh = run(backend(second), tiny_model_dir, {**cfg, "output_dir": str(tmp_path / "c"), "max_steps": 3,
                                                     "save_steps": 0, "warmup_steps": 0},
                   adapter_path=tmp_path / "a" / "checkpoint-3")
    assert abs(fresh.steps[2]["loss"] - expected[4]) > 10 * abs(rec.steps[5]["loss"] - expected[4])




def test_default_output_dir_resume_continues_the_same_run(tiny_model_dir: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """With output_dir left at its default each train() gets a fresh run directory; resuming (True, or a
    checkpoint path) continues the run that wrote the checkpoint instead of starting an empty one."""
    monkeypatch.chdir(tmp_path)
    cfg = {"max_steps": 4, "save_steps": 2, "learning_rate": 5e-3, "per_device_batch_size": 2}
    be = backend("mlx")
    done = be.create_sft_trainer(be.load_model(tiny_model_dir), cfg).train(RECORDS[:4])
    assert done.success
    [run_dir] = list((tmp_path / "outputs").iterdir())
    checkpoint = run_dir / "adapter-checkpoints" / "checkpoint-2"
    assert checkpoint.is_dir()
    for resume in (True, checkpoint):
        again = be.create_sft_trainer(be.load_model(tiny_model_dir), cfg).train(RECORDS[:4],
                                                                              resume_from_checkpoint=resume)
        assert again.success, again.error_message
        assert Path(again.adapter_path) == run_dir.resolve() / "adapter"
        assert again.metrics["history"] == done.metrics["history"]
    assert list((tmp_path / "outputs").iterdir()) == [run_dir]
