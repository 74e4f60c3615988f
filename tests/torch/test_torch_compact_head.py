"""The compact LM head (mindprint_torch.compact_head): TRL's values, computed on the labelled rows only."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from mindprint_torch import PyTorchModel, TorchBackend, compact_head

pytestmark = pytest.mark.torch

COMPARED = ("loss", "grad_norm", "entropy", "mean_token_accuracy", "rewards/chosen", "rewards/rejected",
            "rewards/margins", "logps/chosen", "logps/rejected", "logits/chosen", "logits/rejected")


def _head_rows(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Spy on TRL's chunked log-prob function: how many hidden-state rows each call projects."""
    from trl.kernels import ChunkedLogProbFunction

    rows: list[int] = []
    original = ChunkedLogProbFunction.apply

    def apply(hidden: torch.Tensor, *args: Any) -> Any:
        rows.append(int(hidden.reshape(-1, hidden.shape[-1]).shape[0]))
        return original(hidden, *args)

    monkeypatch.setattr(ChunkedLogProbFunction, "apply", staticmethod(apply))
    return rows


def _shared_batches(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Spy on the shared-prefix backbone: the rows of every batch it computed (None results not counted)."""
    from mindprint_torch import shared_prefix

    batches: list[int] = []
    original = shared_prefix.hidden_states

    def hidden_states(backbone: Any, inputs: dict[str, Any]) -> Any:
        out = original(backbone, inputs)
        if out is not None:
            batches.append(int(out.shape[0]))
        return out

    monkeypatch.setattr(shared_prefix, "hidden_states", hidden_states)
    return batches


def _run(make: Callable[[], Any], records: list[dict[str, Any]]) -> tuple[Any, Any]:
    trainer = make()
    result = trainer.train(records)
    assert result.success, result.error_message
    return trainer, result


def _same_history(a: list[dict[str, float]], b: list[dict[str, float]]) -> None:
    assert len(a) == len(b) > 0
    for step_a, step_b in zip(a, b):
        for key in COMPARED:
            if key in step_a:
                assert step_a[key] == pytest.approx(step_b[key], rel=1e-5, abs=1e-6), (step_a["step"], key)


@pytest.mark.parametrize("task", ["sft", "dpo"])
def test_same_training_as_trl_head_with_fewer_rows(task: str, backend: TorchBackend,
                                                   load_tiny: Callable[[], PyTorchModel],
                                                   sft_records: list[dict[str, Any]],
                                                   easy_pairs: list[dict[str, Any]], tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    records = sft_records if task == "sft" else easy_pairs
    config = {"learning_rate": 5e-3, "max_steps": 4, "per_device_batch_size": 4, "seed": 0}

    def make(out: str) -> Callable[[], Any]:
        create = backend.create_sft_trainer if task == "sft" else backend.create_dpo_trainer
        return lambda: create(load_tiny(), {**config, "output_dir": str(tmp_path / out)})

    rows = _head_rows(monkeypatch)
    shared_batches = _shared_batches(monkeypatch)
    compact, compact_result = _run(make("compact"), records)
    compact_rows = list(rows)
    assert compact.trl_trainer.compact_head is True
    assert compact.get_model().hf_model.get_base_model().__dict__.get("_mindprint_shared_prefix") is (task == "dpo")

    rows.clear()
    monkeypatch.setattr(compact_head, "install", lambda model: False)  # TRL's own head, every position scored
    plain, plain_result = _run(make("plain"), records)
    assert plain.trl_trainer.compact_head is False

    _same_history(compact_result.metrics["history"], plain_result.metrics["history"])
    # the work saved: TRL scores every position of the padded batch on CPU, the compact head only labelled ones
    # (the compact run's first calls are the probe's: TRL's head and the compact one on a 4x11 batch)
    training_rows = compact_rows[-len(rows):]
    assert compact_rows[:2] == [40, 17] and sum(training_rows) < 0.8 * sum(rows), (compact_rows, rows)
    # DPO also runs each pair's prompt once (a second probe); SFT batches are not pairs
    assert compact.trl_trainer.shared_prompts is (task == "dpo")
    # ... and it is the path training took: the probe (2 pairs), the reference precompute (2 batches of 4
    # pairs) and the 4 steps
    assert shared_batches == ([] if task == "sft" else [4] + [8] * 6), shared_batches


def test_probe_refuses_a_head_that_disagrees(tiny: PyTorchModel, backend: TorchBackend,
                                             sft_records: list[dict[str, Any]], tmp_path: Path) -> None:
    trainer = backend.create_sft_trainer(tiny, {"max_steps": 1, "output_dir": str(tmp_path)})
    assert trainer.train(sft_records).success
    model = tiny.hf_model.get_base_model()
    ours = model.__dict__["forward"]

    def skewed(**kwargs: Any) -> Any:
        out = ours(**kwargs)
        out.log_probs = out.log_probs * 1.01
        return out

    _, settings = model.__dict__["_mindprint_trl_forward"]
    assert settings["outputs"] == ("log_probs", "entropy", "is_top1")
    assert compact_head._agrees(model, ours, ours, settings)
    assert not compact_head._agrees(model, ours, skewed, settings)


def test_shared_prompts_refused_when_the_probe_disagrees(tiny: PyTorchModel, backend: TorchBackend,
                                                         easy_pairs: list[dict[str, Any]], tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A model on which the shared path goes wrong (here: continuations that do not see the prompt) must not
    train with it; the compact head alone still applies."""
    from transformers import DynamicCache

    from mindprint_torch import shared_prefix

    monkeypatch.setattr(shared_prefix, "_copied_cache", lambda cache, rows: DynamicCache())
    trainer = backend.create_dpo_trainer(tiny, {"max_steps": 1, "output_dir": str(tmp_path)})
    assert trainer.train(easy_pairs).success
    assert trainer.trl_trainer.compact_head is True and trainer.trl_trainer.shared_prompts is False


def test_a_model_trl_did_not_patch_is_left_alone(tiny: PyTorchModel) -> None:
    model = tiny.hf_model
    assert "forward" not in model.__dict__
    assert compact_head.install(model) is False
    assert "forward" not in model.__dict__


def test_shared_prefix_hidden_states_and_gradients_match_the_padded_batch(tiny: PyTorchModel) -> None:
    """Each pair's prompt once, both continuations from a copy of its cache: the same hidden states as the
    padded batch, and the same gradients for the LoRA weights (with a non-zero adapter, so B != 0)."""
    from mindprint_interfaces import AdapterConfig
    from mindprint_torch import shared_prefix
    from mindprint_torch.adapters import add_adapter

    add_adapter(tiny, AdapterConfig(r=4, alpha=8, target_modules=("q_proj", "k_proj", "v_proj", "o_proj")), seed=0)
    model = tiny.hf_model
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05, generator=gen)
    backbone = model.get_base_model().model
    ids, attention, _ = compact_head._probe_batch(int(model.config.vocab_size), "cpu")
    weights = torch.randn(ids.shape + (backbone.config.hidden_size,), generator=torch.Generator().manual_seed(1))

    def run(shared: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        model.zero_grad()
        inputs = {"input_ids": ids, "attention_mask": attention, "use_cache": False}
        hidden = shared_prefix.hidden_states(backbone, inputs) if shared else backbone(**inputs).last_hidden_state
        assert hidden is not None
        mask = attention[..., None].float()
        (hidden * mask * weights).sum().backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        return (hidden * mask).detach(), grads

    padded, padded_grads = run(False)
    shared, shared_grads = run(True)
    torch.testing.assert_close(shared, padded, rtol=1e-5, atol=1e-5)
    assert padded_grads.keys() == shared_grads.keys() and any("lora_A" in n for n in padded_grads)
    for name, grad in padded_grads.items():
        # fp32 sums in another order: differences ~1e-6 of the largest entry (a wrong cache would be O(1))
        assert (shared_grads[name] - grad).abs().max() <= 1e-5 * grad.abs().max(), name


def test_shared_prefix_declines_batches_it_does_not_handle(tiny: PyTorchModel) -> None:
    from mindprint_torch import shared_prefix

    backbone = tiny.hf_model.model
    ids, attention, _ = compact_head._probe_batch(int(tiny.hf_model.config.vocab_size), "cpu")
    assert shared_prefix.hidden_states(backbone, {"input_ids": ids[:3], "attention_mask": attention[:3]}) is None
    left = attention.flip(1)  # left padding
    assert shared_prefix.hidden_states(backbone, {"input_ids": ids, "attention_mask": left}) is None
    other = ids.clone()
    other[2:, 0] = (other[:2, 0] + 1) % int(tiny.hf_model.config.vocab_size)  # no common first token
    assert shared_prefix.hidden_states(backbone, {"input_ids": other, "attention_mask": attention}) is None
    assert shared_prefix.hidden_states(backbone, {"input_ids": ids, "attention_mask": attention,
                                                  "position_ids": attention.cumsum(1)}) is None
