"""The kit's non-finite guard on both backends: no success and no kept adapter with non-finite weights/loss.

A callback plays the exploding step: at a chosen step it sets every trainable weight to ``value``
(1e30 is finite, but the next step's loss is not; NaN is caught by the weight check itself).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mindprint_interfaces import create_backend
from mindprint_kit.adapter_files import read_adapter

SFT = [{"instruction": "What is two plus two?", "output": "Four, my friend."},
       {"instruction": "Name a colour.", "output": "Blue, like the sea."}]


class Explode:
    def __init__(self, model: Any, at_step: int, value: float) -> None:
        self.model, self.at_step, self.value = model, at_step, value
        self.saves: list[Path] = []

    def on_step(self, step: int, metrics: Mapping[str, float]) -> None:
        if step != self.at_step:
            return
        if hasattr(self.model, "hf_model"):
            import torch
            with torch.no_grad():
                for p in self.model.hf_model.parameters():
                    if p.requires_grad:
                        p.fill_(self.value)
        else:
            import mlx.core as mx
            from mlx.utils import tree_map
            module = self.model.module
            module.update(tree_map(lambda p: mx.full(p.shape, self.value, dtype=p.dtype),
                                   module.trainable_parameters()))

    def on_save(self, path: Path) -> None:
        self.saves.append(path)


def _run(backend_name: str, model_dir: Path, out: Path, *, max_steps: int, save_steps: int, at_step: int,
         value: float) -> tuple[Any, Path, Explode]:
    backend = create_backend(backend_name, device="cpu", dtype="float32", seed=0)
    model = backend.load_model(model_dir)
    cb = Explode(model, at_step, value)
    trainer = backend.create_sft_trainer(model, {"output_dir": str(out), "max_steps": max_steps,
                                                 "save_steps": save_steps, "logging_steps": 1,
                                                 "per_device_batch_size": 1, "lr_scheduler": "constant"},
                                         callbacks=[cb])
    target = out / "adapter"
    return trainer.train(SFT * 4, adapter_dir=target), target, cb


BACKENDS = [pytest.param("pytorch", marks=pytest.mark.torch), pytest.param("mlx", marks=pytest.mark.mlx)]


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_one_step_with_nan_weights_is_not_a_success(backend_name: str, tiny_model_dir: Path, tmp_path: Path) -> None:
    result, target, _ = _run(backend_name, tiny_model_dir, tmp_path, max_steps=1, save_steps=0, at_step=1,
                             value=float("nan"))
    assert not result.success
    assert "non-finite weights" in (result.error_message or "")
    assert result.adapter_path == "" and not target.exists()


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_a_save_right_after_an_exploding_step_is_not_kept(backend_name: str, tiny_model_dir: Path,
                                                          tmp_path: Path) -> None:
    result, target, cb = _run(backend_name, tiny_model_dir, tmp_path, max_steps=4, save_steps=2, at_step=2,
                              value=1e30)
    assert cb.saves, "no periodic save happened: the test does not exercise the guard"
    assert not result.success
    assert result.adapter_path == "" and not target.exists()


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_failure_falls_back_to_the_last_confirmed_save(backend_name: str, tiny_model_dir: Path,
                                                       tmp_path: Path) -> None:
    result, target, cb = _run(backend_name, tiny_model_dir, tmp_path, max_steps=5, save_steps=1, at_step=3,
                              value=1e30)
    assert len(cb.saves) >= 3
    assert not result.success
    assert result.adapter_path == str(target)
    _config, weights = read_adapter(target)
    values = np.concatenate([m.ravel() for pair in weights.values() for m in pair])
    assert np.isfinite(values).all() and np.abs(values).max() < 1e3
    assert np.abs(values).max() > 0  # trained weights, not an empty adapter
