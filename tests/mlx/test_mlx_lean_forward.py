"""The lean forwards (head on loss positions, DPO prompt once) give the padded forward's numbers — values,
gradients, whole SFT and DPO runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import pytest
from mlx.utils import tree_flatten

from mindprint_interfaces import AdapterConfig
from mindprint_interfaces.data import TokenizedPair, as_preference_pairs, tokenize_preferences
from mindprint_mlx import lean_forward, lora
from mindprint_mlx.dpo import MLXDPOTrainer, pair_batch
from mindprint_mlx.losses import token_logprobs

pytestmark = pytest.mark.mlx


def _pairs(model: Any, records: list[dict[str, Any]]) -> list[Any]:
    return list(tokenize_preferences(model.tokenizer, as_preference_pairs(records), max_length=64).examples)


def _nonzero_adapter(model: Any) -> None:
    """A fresh adapter has B = 0 (no effect); give it weights so gradients through the prompt cache matter."""
    model.add_adapter(AdapterConfig(r=4, alpha=8, target_modules=("q_proj", "k_proj", "v_proj", "o_proj")), seed=1)
    for i, module in enumerate(lora.lora_modules(model.module).values()):
        module.lora_b = mx.random.normal(module.lora_b.shape, key=mx.random.key(i)) * 0.05


def _padded(model: Any, pairs: list[Any]) -> tuple[Any, Any]:
    ids, labels = pair_batch(pairs, model.pad_id)
    per_token, _ = token_logprobs(model.logits(ids), labels)
    logps = per_token.sum(axis=1)
    return logps[:len(pairs)], logps[len(pairs):]


def test_tiny_model_supports_it(tiny: Any) -> None:
    assert lean_forward.supports_lean_forward(tiny.module)


def test_values_and_gradients_equal_the_padded_forward(tiny: Any, preference_records: list[dict[str, Any]]) -> None:
    _nonzero_adapter(tiny)
    # uneven lengths on purpose: a one-token completion and prompts of different lengths
    pairs = _pairs(tiny, preference_records[:3]) + [TokenizedPair(prompt_ids=(3, 9), chosen_ids=(17,),
                                                                  rejected_ids=(5, 6, 7, 8, 9, 10, 11))]

    def loss(fn: Any) -> Any:
        def inner() -> Any:
            chosen, rejected = fn()
            return (chosen * 0.7 - rejected * 1.3).sum()
        return inner

    shared_fn = loss(lambda: lean_forward.batch_logps(tiny.module, pairs)[:2])
    padded_fn = loss(lambda: _padded(tiny, pairs))
    sv, sg = nn.value_and_grad(tiny.module, lambda: shared_fn())()
    pv, pg = nn.value_and_grad(tiny.module, lambda: padded_fn())()
    assert abs(sv.item() - pv.item()) < 1e-3 * max(1.0, abs(pv.item()))
    chosen_s, rejected_s, _ = lean_forward.batch_logps(tiny.module, pairs)
    chosen_p, rejected_p = _padded(tiny, pairs)
    assert mx.abs(chosen_s - chosen_p).max().item() < 1e-4
    assert mx.abs(rejected_s - rejected_p).max().item() < 1e-4
    flat_s, flat_p = dict(tree_flatten(sg)), dict(tree_flatten(pg))
    assert flat_s.keys() == flat_p.keys() and flat_s
    scale = max(mx.abs(g).max().item() for g in flat_p.values())
    assert scale > 0
    for key, g in flat_p.items():
        assert mx.abs(flat_s[key] - g).max().item() <= 1e-4 * scale, key


def test_logit_sums_equal_the_padded_metric(tiny: Any, preference_records: list[dict[str, Any]]) -> None:
    pairs = _pairs(tiny, preference_records[:2])
    _, _, sums = lean_forward.batch_logps(tiny.module, pairs)
    ids, labels = pair_batch(pairs, tiny.pad_id)
    logits = tiny.logits(ids)
    _, mask = token_logprobs(logits, labels)
    mean_logits = logits[:, :-1, :].mean(axis=-1) * mask
    expected = [mean_logits[:2].sum().item(), mean_logits[2:].sum().item()]
    assert sums.tolist() == pytest.approx(expected, rel=1e-4, abs=1e-4)


def test_dpo_runs_match_with_and_without_it(backend: Any, load_tiny: Any, preference_records: list[dict[str, Any]],
                                           tmp_path: Path) -> None:
    """Same config, same data: the per-step history (loss, rewards, logps, logits, grad norm) agrees."""
    histories = []
    for shared in (True, False):
        model = load_tiny()
        cfg = {"learning_rate": 5e-3, "max_steps": 4, "per_device_batch_size": 2, "beta": 0.1, "lora_r": 4,
               "lora_alpha": 8, "output_dir": str(tmp_path / str(shared)), "reference": "base"}
        trainer = backend.create_dpo_trainer(model, cfg)
        assert isinstance(trainer, MLXDPOTrainer) and trainer.lean_forward
        trainer.lean_forward = shared
        result = trainer.train(preference_records)
        assert result.success, result.error_message
        histories.append(result.metrics["history"])
    with_it, without = histories
    assert len(with_it) == len(without) == 4
    assert with_it[-1]["rewards/margins"] != 0.0
    for a, b in zip(with_it, without, strict=True):
        for key in ("loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "logps/chosen", "logps/rejected",
                    "logits/chosen", "logits/rejected", "grad_norm"):
            assert a[key] == pytest.approx(b[key], rel=1e-3, abs=1e-4), key


def test_example_ce_equals_the_padded_loss(tiny: Any, sft_records: list[dict[str, Any]]) -> None:
    from mindprint_interfaces.data import as_sft_examples, tokenize_sft
    from mindprint_mlx.losses import ce_sum_and_count
    from mindprint_mlx.model import right_pad

    _nonzero_adapter(tiny)
    examples = list(tokenize_sft(tiny.tokenizer, as_sft_examples(sft_records[:3]), max_length=64).examples)
    rows = [(e.input_ids, e.labels) for e in examples] + [((3, 4, 5, 6), (-100, -100, -100, -100))]  # no loss tokens
    total, count = lean_forward.batch_ce(tiny.module, rows)
    ids = mx.array(right_pad([r[0] for r in rows], tiny.pad_id))
    labels = mx.array(right_pad([r[1] for r in rows], -100))
    expected_total, expected_count = ce_sum_and_count(tiny.logits(ids), labels)
    assert count == int(expected_count.item()) > 0
    assert abs(total.item() - expected_total.item()) < 1e-4 * expected_total.item()


def test_sft_runs_match_with_and_without_it(backend: Any, load_tiny: Any, sft_records: list[dict[str, Any]],
                                           tmp_path: Path) -> None:
    histories = []
    for lean in (True, False):
        cfg = {"learning_rate": 5e-3, "max_steps": 4, "per_device_batch_size": 2, "lora_r": 4, "lora_alpha": 8,
               "output_dir": str(tmp_path / str(lean))}
        trainer = backend.create_sft_trainer(load_tiny(), cfg)
        assert trainer.lean_forward
        trainer.lean_forward = lean
        result = trainer.train(sft_records)
        assert result.success, result.error_message
        histories.append(result.metrics["history"])
    assert histories[0][-1]["loss"] < histories[0][0]["loss"]
    for a, b in zip(*histories, strict=True):
        for key in ("loss", "grad_norm"):
            assert a[key] == pytest.approx(b[key], rel=1e-4), key


class _SoftCappedHead(nn.Module):
    """A model whose logits are not head(body(x)): soft-capped, like Gemma 2. The probe must refuse it."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.model = inner.model
        self.inner = inner

    def __call__(self, inputs: Any, cache: Any = None) -> Any:
        return 5.0 * mx.tanh(self.inner(inputs, cache=cache) / 5.0)


def test_other_layouts_fall_back(tiny: Any) -> None:
    assert not lean_forward.supports_lean_forward(_SoftCappedHead(tiny.module))
    assert lean_forward.lm_head(nn.Linear(2, 2)) is None
    assert not lean_forward.supports_lean_forward(nn.Linear(2, 2))


def test_orpo_cpo_lean_scores_equal_the_padded_batch(tiny: Any, preference_records: list[dict[str, Any]]) -> None:
    """Every sum ORPO/CPO read (completion and whole-row log-probs, the padded logits/* sums, padding included)
    and the gradients of a loss over them, lean vs TRL's padded batch."""
    from mindprint_mlx import pair_scores

    _nonzero_adapter(tiny)
    assert pair_scores.supports_lean_scores(tiny.module, tiny.pad_id)
    pairs = _pairs(tiny, preference_records[:3]) + [TokenizedPair(prompt_ids=(3, 9), chosen_ids=(17,),
                                                                  rejected_ids=(5, 6, 7, 8, 9, 10, 11))]
    for last in (False, True):
        def loss(fn: Any) -> Any:
            def inner() -> Any:
                s = fn()
                return (s.completion_logps * 0.7).sum() - (s.chosen_full_logps * 1.3).sum()
            return inner

        lean = pair_scores.lean_scores(tiny.module, pairs, tiny.pad_id, last)
        padded = pair_scores.padded_scores(tiny.module, pairs, tiny.pad_id, last)
        assert lean.positions == padded.positions
        for name in ("completion_logps", "completion_tokens", "chosen_full_logps", "chosen_full_tokens", "logit_sums"):
            got, want = getattr(lean, name), getattr(padded, name)
            assert got.tolist() == pytest.approx(want.tolist(), rel=1e-5, abs=1e-5), name
        # the padding positions count: another padding token moves the padded rows' logit sums, both ways alike
        other = (tiny.pad_id + 1) % 50
        lean_other = pair_scores.lean_scores(tiny.module, pairs, other, last)
        padded_other = pair_scores.padded_scores(tiny.module, pairs, other, last)
        assert lean_other.logit_sums.tolist() == pytest.approx(padded_other.logit_sums.tolist(), rel=1e-5, abs=1e-5)
        assert mx.abs(lean_other.logit_sums - lean.logit_sums).max().item() > 1e-3
        lv, lg = nn.value_and_grad(tiny.module, loss(lambda: pair_scores.lean_scores(tiny.module, pairs, tiny.pad_id,
                                                                                     last)))()
        pv, pg = nn.value_and_grad(tiny.module, loss(lambda: pair_scores.padded_scores(tiny.module, pairs,
                                                                                       tiny.pad_id, last)))()
        assert lv.item() == pytest.approx(pv.item(), rel=1e-5)
        for (name, a), (_, b) in zip(tree_flatten(lg), tree_flatten(pg), strict=True):
            assert mx.allclose(a, b, rtol=1e-4, atol=1e-6).item(), name


@pytest.mark.parametrize("method", ["orpo", "cpo"])
def test_orpo_cpo_runs_match_with_and_without_it(backend: Any, load_tiny: Any, method: str,
                                                 preference_records: list[dict[str, Any]], tmp_path: Path) -> None:
    histories = []
    for lean in (True, False):
        cfg = {"learning_rate": 5e-3, "max_steps": 3, "per_device_batch_size": 2, "lora_r": 4, "lora_alpha": 8,
               "output_dir": str(tmp_path / str(lean))}
        trainer = backend.create_trainer(method, load_tiny(), cfg)
        assert trainer.lean_scores  # the fast path is taken on this model
        trainer.lean_scores = lean
        result = trainer.train(preference_records)
        assert result.success, result.error_message
        histories.append(result.metrics["history"])
    for a, b in zip(*histories, strict=True):
        for key in ("loss", "nll_loss", "rewards/chosen", "rewards/margins", "logits/chosen", "logits/rejected",
                    "grad_norm"):
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-5), key


def test_vocab_mean_logit_of_any_linear_head() -> None:
    """logits/* come from h . mean(W) + mean(b): read off a plain head, or by the identity rows of any other
    (a quantized one here) — both equal the mean of the head's real logits."""
    from mindprint_mlx import pair_scores

    plain = nn.Linear(320, 1000, bias=True)
    quantized = nn.QuantizedLinear.from_linear(nn.Linear(320, 1000, bias=False), group_size=64, bits=4)
    hidden = mx.random.normal((5, 320), key=mx.random.key(3))
    for head in (plain, quantized, nn.Embedding(1000, 320).as_linear):
        mean_w, mean_b = pair_scores._mean_logit(head, 320)
        expected = head(hidden).mean(axis=-1)
        assert mx.allclose(hidden @ mean_w + mean_b, expected, atol=1e-5).item()
