"""``gradient_checkpointing: true`` (TRL's name) on both backends: the same losses as without it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mindprint_interfaces import BackendConfig

SFT = [{"instruction": f"What is {i} plus {i}?", "output": f"The answer is {2 * i}."} for i in range(6)]
PAIRS = [{"prompt": f"What is {i} plus {i}?", "chosen": f"The answer is {2 * i}.", "rejected": "bad bad no"}
         for i in range(6)]


def make_backend(name: str) -> Any:
    if name == "mlx":
        pytest.importorskip("mlx_lm")
        from mindprint_mlx import MLXBackend

        return MLXBackend(BackendConfig("mlx", device="cpu", dtype="float32", seed=0))
    pytest.importorskip("trl")
    from mindprint_torch import PyTorchBackend

    return PyTorchBackend(BackendConfig("pytorch", device="cpu", dtype="float32", seed=0))


def losses(backend: Any, model_dir: Path, method: str, checkpointing: bool, out: Path) -> list[float]:
    model = backend.load_model(model_dir)
    config = {"max_steps": 3, "learning_rate": 1e-2, "per_device_batch_size": 2, "output_dir": str(out),
              "gradient_checkpointing": checkpointing}
    res = backend.create_trainer(method, model, config).train(SFT if method == "sft" else PAIRS,
                                                              adapter_dir=out / f"{method}-{checkpointing}")
    assert res.success, res.error_message
    return [float(h["loss"]) for h in res.metrics["history"]]


@pytest.mark.parametrize("method", ["sft", "dpo"])
@pytest.mark.parametrize("name", ["mlx", "pytorch"])
def test_same_losses_with_and_without(name: str, method: str, tiny_model_dir: Path, tmp_path: Path) -> None:
    backend = make_backend(name)
    plain = losses(backend, tiny_model_dir, method, False, tmp_path)
    checkpointed = losses(backend, tiny_model_dir, method, True, tmp_path)
    assert len(plain) == 3 and len(set(plain)) > 1  # the steps train (the losses move)
    for a, b in zip(plain, checkpointed, strict=True):
        assert abs(a - b) <= 1e-5 * abs(a) + 1e-7, (plain, checkpointed)


def test_mlx_layers_are_restored_after_training(tiny_model_dir: Path, tmp_path: Path) -> None:
    backend = make_backend("mlx")
    model = backend.load_model(tiny_model_dir)
    layer_class = type(model.module.layers[0])
    before = layer_class.__call__
    losses(backend, tiny_model_dir, "sft", True, tmp_path)
    assert layer_class.__call__ is before
