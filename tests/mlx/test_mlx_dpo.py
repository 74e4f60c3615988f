"""DPO: TRL's losses and metrics, step-0 values, the three reference modes, accuracies rise."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlx.core as mx
import numpy as np
import pytest

from mindprint_interfaces import BackendMismatchError, ConfigError
from mindprint_interfaces.data import as_preference_pairs, tokenize_preferences
from mindprint_mlx.losses import dpo_per_example_loss

pytestmark = pytest.mark.mlx

TRL_METRICS = {"rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "logps/chosen",
               "logps/rejected", "logits/chosen", "logits/rejected", "loss", "learning_rate", "grad_norm"}


def cfg(tmp_path: Path, **kw: Any) -> dict[str, Any]:
    base = {"learning_rate": 5e-3, "num_epochs": 1, "per_device_batch_size": 3, "beta": 0.1,
            "output_dir": str(tmp_path / "dpo"), "lora_r": 4, "lora_alpha": 8}
    return {**base, **kw}


def test_losses_equal_trl_formulas() -> None:
    """Our mx losses against TRL 1.16's torch expressions (copied from DPOTrainer._compute_loss) on random inputs."""
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(0)
    pc, pr, rc, rr = (rng.normal(-20, 5, size=7).astype(np.float32) for _ in range(4))
    nc, nr = rng.integers(1, 30, size=7).astype(np.float32), rng.integers(1, 30, size=7).astype(np.float32)
    beta, ls = 0.3, 0.2
    t = {k: torch.tensor(v) for k, v in dict(pc=pc, pr=pr, rc=rc, rr=rr, nc=nc, nr=nr).items()}
    cs, rs = t["pc"] - t["rc"], t["pr"] - t["rr"]
    d = cs - rs
    expected = {
        "sigmoid": -F.logsigmoid(beta * d),
        "hinge": torch.relu(1 - beta * d),
        "ipo": (cs / t["nc"].clamp(min=1.0) - rs / t["nr"].clamp(min=1.0) - 1 / (2 * beta)) ** 2,
        "robust": (-(1 - ls) * F.logsigmoid(beta * d) - (-ls * F.logsigmoid(-beta * d))) / (1 - 2 * ls),
    }
    for loss_type, want in expected.items():
        got = dpo_per_example_loss(loss_type, beta, ls if loss_type == "robust" else 0.0, *map(mx.array, (pc, pr, rc, rr)),
                                   mx.array(nc), mx.array(nr))
        assert np.allclose(np.array(got), want.numpy(), rtol=1e-5, atol=1e-6), loss_type


@pytest.mark.parametrize(("loss_type", "extra", "step0"), [
    ("sigmoid", {}, math.log(2)),
    ("hinge", {}, 1.0),
    ("ipo", {}, (1 / (2 * 0.1)) ** 2),
    ("robust", {"label_smoothing": 0.1}, math.log(2)),
])
def test_step0_values(backend: Any, tiny: Any, preference_records: list[dict[str, Any]], tmp_path: Path,
                      loss_type: str, extra: dict[str, Any], step0: float) -> None:
    result = backend.create_dpo_trainer(tiny, cfg(tmp_path, max_steps=1, loss_type=loss_type, **extra)).train(
        preference_records)
    assert result.success, result.error_message
    first = result.metrics["history"][0]
    assert first["loss"] == pytest.approx(step0, rel=1e-5)
    assert first["rewards/accuracies"] == 0.0  # strict >, rewards are exactly 0 at step 0
    assert first["rewards/chosen"] == 0.0 and first["rewards/margins"] == 0.0
    assert TRL_METRICS <= set(first)


def test_step0_logps_are_sequence_logprobs(backend: Any, tiny: Any, preference_records: list[dict[str, Any]],
                                            tmp_path: Path) -> None:
    pairs = tokenize_preferences(tiny.tokenizer, as_preference_pairs(preference_records[:3]), max_length=1024).examples
    chosen = tiny.sequence_logprobs([p.prompt_ids for p in pairs], [p.chosen_ids for p in pairs])
    rejected = tiny.sequence_logprobs([p.prompt_ids for p in pairs], [p.rejected_ids for p in pairs])
    result = backend.create_dpo_trainer(tiny, cfg(tmp_path, max_steps=1)).train(preference_records[:3])
    first = result.metrics["history"][0]
    assert first["logps/chosen"] == pytest.approx(float(np.mean(chosen)), rel=1e-5)
    assert first["logps/rejected"] == pytest.approx(float(np.mean(rejected)), rel=1e-5)


def test_dpo_accuracies_rise(backend: Any, tiny: Any, preference_records: list[dict[str, Any]], tmp_path: Path) -> None:
    result = backend.create_dpo_trainer(tiny, cfg(tmp_path, num_epochs=3)).train(preference_records)
    assert result.success
    hist = result.metrics["history"]
    assert hist[0]["loss"] == pytest.approx(math.log(2), rel=1e-5)
    assert hist[-1]["rewards/accuracies"] > 0.5
    assert hist[-1]["rewards/margins"] > 0
    assert hist[-1]["loss"] < hist[0]["loss"]


def sft_then(backend: Any, model: Any, tmp_path: Path) -> None:
    records = [{"prompt": f"What is {i} plus {i}?", "completion": f"The answer is {2 * i}."} for i in range(6)]
    r = backend.create_sft_trainer(model, {"learning_rate": 1e-2, "max_steps": 3, "per_device_batch_size": 6,
                                           "output_dir": str(tmp_path / "sft"), "lora_r": 4, "lora_alpha": 8}).train(records)
    assert r.success


def test_reference_initial_policy_after_sft(backend: Any, tiny: Any, preference_records: list[dict[str, Any]],
                                            tmp_path: Path) -> None:
    """After SFT the reference is the SFT model (not the base): step-0 rewards are 0 and loss ln 2."""
    sft_then(backend, tiny, tmp_path)
    result = backend.create_dpo_trainer(tiny, cfg(tmp_path, max_steps=1)).train(preference_records)
    first = result.metrics["history"][0]
    assert first["loss"] == pytest.approx(math.log(2), rel=1e-5)
    assert first["rewards/chosen"] == 0.0


def test_reference_base_and_model_agree(backend: Any, load_tiny: Callable[[], Any],
                                        preference_records: list[dict[str, Any]], tmp_path: Path) -> None:
    """reference="base" (adapters off) equals reference="model" with a fresh base ref_model; both differ from ln 2."""
    a = load_tiny()
    sft_then(backend, a, tmp_path / "a")
    base = backend.create_dpo_trainer(a, cfg(tmp_path / "a", max_steps=1, reference="base")).train(preference_records)
    b = load_tiny()
    sft_then(backend, b, tmp_path / "b")
    ref = load_tiny()
    explicit = backend.create_dpo_trainer(b, cfg(tmp_path / "b", max_steps=1, reference="model"), ref_model=ref).train(
        preference_records)
    fb, fe = base.metrics["history"][0], explicit.metrics["history"][0]
    assert fb["rewards/chosen"] != 0.0
    for key in ("loss", "rewards/chosen", "rewards/rejected", "rewards/margins"):
        assert fb[key] == pytest.approx(fe[key], rel=1e-4, abs=1e-6), key
    assert fb["loss"] != pytest.approx(math.log(2), rel=1e-4)


def test_reference_config_errors(backend: Any, tiny: Any, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="ref_model"):
        backend.create_dpo_trainer(tiny, cfg(tmp_path, reference="model"))
    with pytest.raises(ConfigError, match="label_smoothing"):
        backend.create_dpo_trainer(tiny, cfg(tmp_path, label_smoothing=0.1))

    class PyTorchModel:
        pass

    with pytest.raises(BackendMismatchError, match="Expected MLXModel, got PyTorchModel"):
        backend.create_dpo_trainer(tiny, cfg(tmp_path), ref_model=PyTorchModel())


def test_dpo_train_on_topic(backend: Any, tiny: Any, preference_records: list[dict[str, Any]], tmp_path: Path) -> None:
    result = backend.create_dpo_trainer(tiny, cfg(tmp_path, max_steps=1)).train_on_topic(preference_records, "u/c/t")
    assert result.success and Path(result.adapter_path) == tmp_path / "dpo" / "u" / "c" / "t"
