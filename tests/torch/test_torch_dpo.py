from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mindprint_interfaces import BackendMismatchError, ConfigError
from mindprint_torch import PyTorchModel, TorchBackend

pytestmark = pytest.mark.torch

LN2 = math.log(2)
TRL_METRICS = ("rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "logps/chosen",
               "logps/rejected", "loss", "learning_rate", "grad_norm")


class MLXModel:
    pass


def _dpo(tmp_path: Path, **kw: Any) -> dict[str, Any]:
    return {"learning_rate": 1e-3, "max_steps": 6, "per_device_batch_size": 2, "beta": 0.1,
            "output_dir": str(tmp_path), "seed": 0, **kw}


def _sft(backend: TorchBackend, model: PyTorchModel, records: list[dict[str, Any]], tmp_path: Path) -> None:
    result = backend.create_sft_trainer(model, {"learning_rate": 5e-3, "num_epochs": 2, "per_device_batch_size": 4,
                                                "output_dir": str(tmp_path / "sft")}).train(records)
    assert result.success, result.error_message


def test_fresh_adapter_step0_is_ln2_and_accuracy_rises(backend: TorchBackend, tiny: PyTorchModel,
                                                       easy_pairs: list[dict[str, Any]], tmp_path: Path) -> None:
    result = backend.create_dpo_trainer(tiny, _dpo(tmp_path, max_steps=10)).train(easy_pairs)
    assert result.success, result.error_message
    history = result.metrics["history"]
    assert history[0]["loss"] == pytest.approx(LN2, abs=1e-5)
    assert history[0]["rewards/accuracies"] == 0.0  # TRL's strict ">" at equal rewards
    assert history[-1]["rewards/accuracies"] == 1.0 and history[-1]["rewards/margins"] > history[1]["rewards/margins"] > 0
    assert history[-1]["loss"] < 0.6
    for key in TRL_METRICS:
        assert key in result.metrics, key
    assert result.samples_trained == len(easy_pairs)
    assert list(tiny.hf_model.peft_config) == ["default"]  # TRL's frozen "ref" copy is gone after training


def test_reference_after_sft(backend: TorchBackend, load_tiny: Callable[[], PyTorchModel],
                             sft_records: list[dict[str, Any]], easy_pairs: list[dict[str, Any]], tmp_path: Path) -> None:
    model = load_tiny()
    _sft(backend, model, sft_records, tmp_path)
    sft_logits = model.forward([[5, 6, 7, 8]]).logits
    # initial policy (default): the SFT model is the reference, so step 0 is exactly ln 2 — with the reference
    # log-probs precomputed (the default) and computed on the fly by TRL every step
    for precompute in (True, False):
        init = backend.create_dpo_trainer(model, _dpo(tmp_path, max_steps=1, learning_rate=1e-9,
                                                      precompute_ref_log_probs=precompute)).train(easy_pairs)
        assert init.success, init.error_message
        assert init.metrics["history"][0]["loss"] == pytest.approx(LN2, abs=1e-5), precompute
    assert (model.forward([[5, 6, 7, 8]]).logits - sft_logits).abs().max() < 1e-3  # DPO continued the SFT adapter
    # ... with the base as reference the SFT adapter already moves the log-ratios away from 0
    on_the_fly = backend.create_dpo_trainer(model, _dpo(tmp_path, max_steps=1, reference="base", learning_rate=1e-9,
                                                        precompute_ref_log_probs=False)).train(easy_pairs)
    first = on_the_fly.metrics["history"][0]
    assert abs(first["rewards/chosen"]) > 1e-3 and abs(first["loss"] - LN2) > 1e-4
    # precomputed reference log-probs give the same first step as computing them on the fly
    pre = backend.create_dpo_trainer(model, _dpo(tmp_path, max_steps=1, reference="base", learning_rate=1e-9)
                                     ).train(easy_pairs)
    assert pre.metrics["history"][0]["loss"] == pytest.approx(first["loss"], abs=1e-4)
    assert pre.metrics["history"][0]["rewards/chosen"] == pytest.approx(first["rewards/chosen"], abs=1e-4)
    assert pre.metrics["history"][0]["rewards/rejected"] == pytest.approx(first["rewards/rejected"], abs=1e-4)


def test_explicit_ref_model(backend: TorchBackend, load_tiny: Callable[[], PyTorchModel],
                            sft_records: list[dict[str, Any]], easy_pairs: list[dict[str, Any]], tmp_path: Path) -> None:
    policy = load_tiny()
    _sft(backend, policy, sft_records, tmp_path)
    ref = load_tiny()
    ref.load_adapter(policy.save_adapter(tmp_path / "sft-adapter"))
    result = backend.create_dpo_trainer(policy, _dpo(tmp_path, max_steps=2), ref_model=ref).train(easy_pairs)
    assert result.success and result.metrics["history"][0]["loss"] == pytest.approx(LN2, abs=1e-5)
    assert ref.has_adapter()  # the user's reference model is not merged in place
    plain = load_tiny()
    result = backend.create_dpo_trainer(policy, _dpo(tmp_path, max_steps=1), ref_model=plain).train(easy_pairs)
    assert abs(result.metrics["history"][0]["loss"] - LN2) > 1e-4  # the SFT'd policy differs from the base ref


@pytest.mark.parametrize(("loss_type", "extra", "expected"), [
    ("ipo", {}, (0 - 1 / (2 * 0.1)) ** 2),  # (delta - 1/(2 beta))^2 at delta = 0
    ("hinge", {}, 1.0),  # relu(1 - beta * 0)
    ("robust", {"label_smoothing": 0.1}, LN2),  # ((1-e) ln2 - e ln2) / (1 - 2e)
    ("sigmoid", {}, LN2),
])
def test_loss_types_at_step0(backend: TorchBackend, tiny: PyTorchModel, easy_pairs: list[dict[str, Any]],
                             tmp_path: Path, loss_type: str, extra: dict[str, Any], expected: float) -> None:
    result = backend.create_dpo_trainer(tiny, _dpo(tmp_path, max_steps=1, loss_type=loss_type, **extra)).train(easy_pairs)
    assert result.success, result.error_message
    assert result.metrics["history"][0]["loss"] == pytest.approx(expected, rel=1e-5)


def test_trl_config_mapping(backend: TorchBackend, tiny: PyTorchModel, easy_pairs: list[dict[str, Any]],
                            tmp_path: Path) -> None:
    trainer = backend.create_dpo_trainer(tiny, _dpo(tmp_path, max_steps=1, loss_type="robust", label_smoothing=0.2,
                                                    beta=0.3))
    assert trainer.train(easy_pairs).success
    args = trainer.trl_trainer.args
    assert args.loss_type == ["robust"] and args.label_smoothing == 0.2 and args.beta == 0.3
    assert (args.bf16, args.fp16, args.gradient_checkpointing) == (False, False, False)
    batch = trainer.trl_trainer.train_dataset[0]
    assert set(batch) >= {"prompt_ids", "chosen_ids", "rejected_ids"}


def test_dpo_errors(backend: TorchBackend, tiny: PyTorchModel, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="label_smoothing"):
        backend.create_dpo_trainer(tiny, _dpo(tmp_path, label_smoothing=0.1))
    with pytest.raises(ConfigError, match="needs a ref_model"):
        backend.create_dpo_trainer(tiny, _dpo(tmp_path, reference="model"))
    with pytest.raises(BackendMismatchError, match="Expected PyTorchModel, got MLXModel"):
        backend.create_dpo_trainer(tiny, _dpo(tmp_path), ref_model=MLXModel())  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="must not be the policy"):
        backend.create_dpo_trainer(tiny, _dpo(tmp_path), ref_model=tiny)
    from mindprint_interfaces import DataValidationError

    with pytest.raises(DataValidationError, match="identical to chosen"):
        backend.create_dpo_trainer(tiny, _dpo(tmp_path)).train([{"prompt": "p", "chosen": "a", "rejected": "a"}])
