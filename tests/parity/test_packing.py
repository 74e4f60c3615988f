"""Padding-free packing (``sft.packing``): TRL's bins, every example's unpacked loss, the same run on both backends.

* the kit's best-fit-decreasing bins are TRL's ``pack_dataset(strategy="bfd")`` bins, row for row, across
  TRL's 1000-example chunks;
* a packed row gives each of its examples the loss that example has alone (1e-5), on torch through TRL's
  padding-free collator and transformers' attention, on MLX through :mod:`mindprint_mlx.packed` — and the same
  row with attention allowed across the boundaries moves those losses by far more, so a leak would be seen;
* one optimizer step over all the data gives the same loss and the same adapter packed and unpacked, and a
  packed run gives the same loss curve on torch and on MLX.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mindprint_interfaces import Backend
from mindprint_interfaces.configs import SFTConfig
from mindprint_interfaces.data import IGNORE_INDEX
from mindprint_kit.data import prepare_sft
from mindprint_kit.packing import PackedExample, bfd_bins, pack_examples

pytestmark = [pytest.mark.torch, pytest.mark.mlx]

EXACT = 1e-5  # an example's loss (mean cross-entropy over its loss tokens), packed vs unpacked (fp32)
LEAK = 1e-3  # a cross-example attention leak moves some example's loss by more than this on the tiny model

# lengths of ~30..90 tokens on the tiny model's tokenizer, so rows hold 2..5 examples
SFT = [{"instruction": "Say " + " ".join(["hi"] * (1 + (7 * i) % 9)) + f" {i}.",
        "output": "Ok " + " ".join(str(k) for k in range(1 + (5 * i) % 12)) + "."} for i in range(14)]
MAX_LENGTH = 200


def test_kit_bins_are_trls_bins() -> None:
    from datasets import Dataset
    from trl.data_utils import pack_dataset

    rng = np.random.default_rng(0)
    lengths = [int(n) for n in np.clip(rng.lognormal(4.0, 1.0, size=2300), 1, 512)]  # three TRL chunks
    data = Dataset.from_dict({"input_ids": [[i] * n for i, n in enumerate(lengths)]})
    packed = pack_dataset(data, 512, "bfd")
    trl_rows = [[row[k] for k in np.cumsum([0, *seq[:-1]])] for row, seq in
                zip(packed["input_ids"], packed["seq_lengths"], strict=True)]
    ours = bfd_bins(lengths, 512)
    assert ours == trl_rows
    assert len(ours) < len(lengths) / 2  # it really packs


def _rows(backend: Backend, model: Any) -> tuple[list[Any], list[PackedExample]]:
    cfg = SFTConfig(max_length=MAX_LENGTH)
    examples = prepare_sft(model.tokenizer, SFT, cfg, "test").examples
    rows = pack_examples(examples, MAX_LENGTH)
    assert max(len(r.seq_lengths) for r in rows) >= 3
    return examples, rows


def _torch_ce(hf_model: Any, ids: list[int], labels: list[int], **inputs: Any) -> float:
    import torch

    with torch.no_grad():
        logits = hf_model(input_ids=torch.tensor([ids]), use_cache=False, **inputs).logits[0, :-1].float()
    targets = torch.tensor(labels[1:])
    keep = targets != IGNORE_INDEX
    return float(torch.nn.functional.cross_entropy(logits[keep], targets[keep]))


def test_torch_packed_row_gives_each_example_its_loss(torch_backend: Backend, tiny_model_dir: Path) -> None:
    import torch
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    model: Any = torch_backend.load_model(tiny_model_dir)
    hf = model.hf_model.eval()
    examples, rows = _rows(torch_backend, model)
    collate = DataCollatorForLanguageModeling(pad_token_id=model.pad_id, padding_free=True)
    unpacked = [_torch_ce(hf, list(e.input_ids), list(e.labels)) for e in examples]
    bins = bfd_bins([len(e.input_ids) for e in examples], MAX_LENGTH)
    worst = leak = 0.0
    for row, members in zip(rows, bins, strict=True):
        for k, i in enumerate(members):
            one = row.only(k)
            batch = collate([{"input_ids": list(one.input_ids), "labels": list(one.labels),
                              "seq_lengths": list(one.seq_lengths)}])
            got = _torch_ce(hf, batch["input_ids"][0].tolist(), batch["labels"][0].tolist(),
                            position_ids=batch["position_ids"])
            worst = max(worst, abs(got - unpacked[i]))
            crossed = _torch_ce(hf, list(one.input_ids), list(one.labels),
                                attention_mask=torch.ones(1, len(one.input_ids), dtype=torch.long))
            leak = max(leak, abs(crossed - unpacked[i]))
    assert worst <= EXACT, worst
    assert leak > LEAK, f"the tiny model does not see a cross-example leak ({leak:.2e})"


def _mean(ce_and_count: tuple[Any, int]) -> float:
    total, count = ce_and_count
    return float(total.item()) / count


def test_mlx_packed_row_gives_each_example_its_loss(mlx_backend: Backend, tiny_model_dir: Path) -> None:
    from mindprint_mlx import lean_forward, packed

    model: Any = mlx_backend.load_model(tiny_model_dir)
    module = model.module
    module.eval()
    examples, rows = _rows(mlx_backend, model)
    unpacked = [_mean(lean_forward.example_ce(module, e.input_ids, e.labels)) for e in examples]
    bins = bfd_bins([len(e.input_ids) for e in examples], MAX_LENGTH)
    worst = leak = 0.0
    for row, members in zip(rows, bins, strict=True):
        for k, i in enumerate(members):
            one = row.only(k)
            worst = max(worst, abs(_mean(packed.packed_ce(module, one)) - unpacked[i]))
            crossed = PackedExample(one.input_ids, one.labels, (len(one.input_ids),))  # one causal block
            leak = max(leak, abs(_mean(packed.packed_ce(module, crossed)) - unpacked[i]))
    assert worst <= EXACT, worst
    assert leak > LEAK, f"the tiny model does not see a cross-example leak ({leak:.2e})"
    packed.check_packing(module)  # the trainer's own probe passes on this model


def _train(backend: Backend, model_dir: Path, tmp: Path, **cfg: Any) -> tuple[list[float], dict[str, Any], Any]:
    model: Any = backend.load_model(model_dir)
    steps: list[float] = []

    from mindprint_interfaces import BaseCallback

    class Losses(BaseCallback):
        def on_step(self, step: int, metrics: Any) -> None:
            steps.append(float(metrics["loss"]))

    config = {"learning_rate": 5e-3, "max_length": MAX_LENGTH, "lr_scheduler": "constant", "seed": 3,
              "output_dir": str(tmp), **cfg}
    result = backend.create_sft_trainer(model, config, callbacks=[Losses()]).train(SFT)
    assert result.success, result.error_message
    from safetensors.numpy import load_file

    weights = load_file(str(Path(result.adapter_path) / "adapter_model.safetensors"))
    return steps, dict(result.metrics), weights


@pytest.mark.parametrize("which", ["pytorch", "mlx"])
def test_one_step_over_all_data_is_the_same_packed(which: str, torch_backend: Backend, mlx_backend: Backend,
                                                   tiny_model_dir: Path, tmp_path: Path) -> None:
    backend = torch_backend if which == "pytorch" else mlx_backend
    model: Any = backend.load_model(tiny_model_dir)
    n_rows = len(_rows(backend, model)[1])
    plain, plain_metrics, plain_w = _train(backend, tiny_model_dir, tmp_path / "plain", max_steps=1,
                                           per_device_batch_size=len(SFT))
    packed_, packed_metrics, packed_w = _train(backend, tiny_model_dir, tmp_path / "packed", max_steps=1,
                                               per_device_batch_size=n_rows, packing=True)
    assert packed_ == pytest.approx(plain, rel=EXACT, abs=EXACT)
    assert packed_w.keys() == plain_w.keys()
    for name in plain_w:
        np.testing.assert_allclose(packed_w[name], plain_w[name], rtol=1e-4, atol=1e-6, err_msg=name)
    assert packed_metrics.get("packed_sequences", n_rows) == n_rows


def test_packed_run_is_the_same_on_both_backends(torch_backend: Backend, mlx_backend: Backend,
                                                 tiny_model_dir: Path, tmp_path: Path) -> None:
    t_curve, _, _ = _train(torch_backend, tiny_model_dir, tmp_path / "t", max_steps=6, per_device_batch_size=2,
                           packing=True)
    m_curve, _, _ = _train(mlx_backend, tiny_model_dir, tmp_path / "m", max_steps=6, per_device_batch_size=2,
                           packing=True)
    assert len(t_curve) == 6 and t_curve[-1] < t_curve[0]
    assert m_curve == pytest.approx(t_curve, rel=2e-3, abs=1e-4), f"torch {t_curve}\nmlx   {m_curve}"


def test_mlx_row_cut_into_sub_rows_keeps_every_example_and_its_loss(mlx_backend: Backend, tiny_model_dir: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A row runs as sub-rows of whole examples (packed.GROUP_TOKENS); cut small here so every row is cut."""
    from mindprint_mlx import lean_forward, packed

    model: Any = mlx_backend.load_model(tiny_model_dir)
    module = model.module
    module.eval()
    examples, rows = _rows(mlx_backend, model)
    limit = 2 * min(len(e.input_ids) for e in examples)
    monkeypatch.setattr(packed, "GROUP_TOKENS", limit)
    unpacked = [lean_forward.example_ce(module, e.input_ids, e.labels) for e in examples]
    bins = bfd_bins([len(e.input_ids) for e in examples], MAX_LENGTH)
    cut = 0
    for row, members in zip(rows, bins, strict=True):
        parts = packed.sub_rows(row)
        cut += len(parts) > 1
        assert [t for p in parts for t in p.input_ids] == list(row.input_ids)
        assert [n for p in parts for n in p.seq_lengths] == list(row.seq_lengths)
        assert all(len(p.input_ids) <= limit or len(p.seq_lengths) == 1 for p in parts)
        total, count = packed.packed_ce(module, row)
        expected = sum(float(unpacked[i][0].item()) for i in members)
        assert count == sum(unpacked[i][1] for i in members)
        assert abs(float(total.item()) - expected) <= EXACT * max(1.0, abs(expected)), (total.item(), expected)
    assert cut, "no row was cut: the test did not exercise sub-rows"
