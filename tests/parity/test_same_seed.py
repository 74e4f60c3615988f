"""Same seed, same run, either backend: no shared adapter handed in, only ``--seed``.

The initial LoRA weights are the kit's backend-neutral draw (:mod:`mindprint_kit.lora_init`) and the data
order is the kit's epoch permutations (:func:`mindprint_kit.schedule.epoch_order`, torch through
:mod:`mindprint_torch.sampler`), so ``mindprint sft --seed 42`` gives the same per-step losses on torch and on
MLX, within the parity suite's tolerance for the tiny model (2e-3 relative or 1e-4 absolute,
``test_parity.test_ten_step_loss_curves_agree``; observed ~4e-6). The tiny data sets take several epochs in
mini-batches of 2, so both the order (epoch 0 and epoch 1 permutations) and the initial A matter: a different
seed moves the curve by ~0.1 (more than 5 times the tolerance at some step; observed 13x on SFT).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mindprint_interfaces import AdapterConfig, Backend
from mindprint_kit.lora_init import initial_lora_weights
from mindprint_kit.schedule import epoch_order

pytestmark = [pytest.mark.torch, pytest.mark.mlx]

REL, ABS = 2e-3, 1e-4  # the parity suite's curve tolerance on the tiny model

SFT = [{"instruction": f"What is {i} plus {i}?", "output": f"The answer is {2 * i}."} for i in range(6)]
DPO = [{"prompt": f"What is {i} plus {i}?", "chosen": f"The answer is {2 * i}.", "rejected": "bad bad no yes"}
       for i in range(6)]
STEPS = {"sft": 6, "dpo": 6}  # 3 steps per epoch: epochs 0 and 1


def _cli_curve(kind: str, backend: str, model: Path, data: Path, seed: int, out: Path) -> list[float]:
    from mindprint_trainer import cli

    code = cli.main([kind, "--backend", backend, "--device", "cpu", "--dtype", "float32", "--model", str(model),
                     "--data", str(data), "--seed", str(seed), "-o", str(out),
                     "--set", f"{kind}.max_steps={STEPS[kind]}", "--set", f"{kind}.per_device_batch_size=2",
                     "--set", f"{kind}.learning_rate={5e-3 if kind == 'sft' else 2e-3}"])
    assert code == 0, f"mindprint {kind} --backend {backend} exited {code}"
    runs = [p for p in out.iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    rows = [json.loads(line) for line in (runs[0] / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, STEPS[kind] + 1))
    return [float(r["loss"]) for r in rows]


def _data(tmp: Path, kind: str) -> Path:
    path = tmp / f"{kind}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in (SFT if kind == "sft" else DPO)), encoding="utf-8")
    return path


@pytest.mark.parametrize("kind", ["sft", "dpo"])
def test_same_seed_same_curve_on_both_backends(kind: str, tiny_model_dir: Path, tmp_path: Path) -> None:
    data = _data(tmp_path, kind)
    torch_curve = _cli_curve(kind, "pytorch", tiny_model_dir, data, 42, tmp_path / "torch")
    mlx_curve = _cli_curve(kind, "mlx", tiny_model_dir, data, 42, tmp_path / "mlx")
    assert mlx_curve == pytest.approx(torch_curve, rel=REL, abs=ABS), f"torch {torch_curve}\nmlx   {mlx_curve}"
    assert torch_curve[-1] < torch_curve[0]
    if kind != "sft":
        return
    # another seed is another run (other initial A, other epoch orders), by far more than the tolerance
    other = _cli_curve(kind, "pytorch", tiny_model_dir, data, 7, tmp_path / "torch-7")
    assert other != pytest.approx(torch_curve, rel=REL, abs=ABS)
    gaps = [abs(a - b) / max(ABS, REL * abs(b)) for a, b in zip(other, torch_curve, strict=True)]
    assert max(gaps) > 5, f"seed 42 {torch_curve}\nseed 7  {other}"  # in units of the tolerance


def _torch_initial(backend: Backend, model_dir: Path, config: AdapterConfig, seed: int, **load: Any) -> Any:
    from mindprint_torch.adapters import add_adapter, live_weights

    model: Any = backend.load_model(model_dir, **load)
    add_adapter(model, config, seed=seed)
    return live_weights(model)


def _mlx_initial(backend: Backend, model_dir: Path, config: AdapterConfig, seed: int, **load: Any) -> Any:
    from mindprint_mlx.adapters import live_weights

    model: Any = backend.load_model(model_dir, **load)
    model.add_adapter(config, seed=seed)
    return live_weights(model.module)


def _same(a: Any, b: Any) -> None:
    assert set(a) == set(b)
    for site in a:
        for x, y in zip(a[site], b[site], strict=True):
            np.testing.assert_array_equal(np.asarray(x, np.float32), np.asarray(y, np.float32), err_msg=str(site))


def _shapes(weights: Any) -> dict[tuple[int, str], tuple[int, int, int]]:
    return {site: (a.shape[0], a.shape[1], b.shape[0]) for site, (a, b) in weights.items()}


@pytest.mark.parametrize("config", [
    AdapterConfig(r=4, alpha=8),
    AdapterConfig(r=2, alpha=4, target_modules=("all-linear",), layers=(1,)),
    AdapterConfig(r=3, alpha=3, target_modules=("mlp",)),
], ids=["default", "all-linear-layer1", "mlp"])
def test_initial_adapter_is_the_kits_draw_on_both(torch_backend: Backend, mlx_backend: Backend,
                                                  tiny_model_dir: Path, config: AdapterConfig) -> None:
    t = _torch_initial(torch_backend, tiny_model_dir, config, 42)
    m = _mlx_initial(mlx_backend, tiny_model_dir, config, 42)
    _same(t, m)
    _same(t, initial_lora_weights(_shapes(t), 42))
    assert all(not b.any() for _, b in t.values()) and all(a.any() for a, _ in t.values())
    other = _torch_initial(torch_backend, tiny_model_dir, config, 7)
    assert all(not np.allclose(other[s][0], t[s][0]) for s in t), "the seed must change every lora_A"


def test_quantized_bases_draw_the_same_adapter(torch_backend: Backend, mlx_backend: Backend,
                                               tiny_model_dir: Path) -> None:
    """QLoRA: the packed base weights do not show ``in``; the live LoRA layers do, on both backends."""
    config = AdapterConfig(r=4, alpha=8)
    full = _torch_initial(torch_backend, tiny_model_dir, config, 3)
    _same(full, _mlx_initial(mlx_backend, tiny_model_dir, config, 3, quantization={"bits": 4, "group_size": 32}))
    pytest.importorskip("bitsandbytes")
    _same(full, _torch_initial(torch_backend, tiny_model_dir, config, 3, quantization={"bits": 4}))


def test_the_seed_changes_the_order_of_every_epoch() -> None:
    orders = {seed: [epoch_order(6, seed, e) for e in range(2)] for seed in (42, 7)}
    assert orders[42][0] != orders[42][1]  # each epoch draws its own permutation
    assert orders[42] != orders[7]
    assert all(sorted(o) == list(range(6)) for o in orders[42] + orders[7])
    assert epoch_order(6, 42, 0, shuffle=False) == list(range(6))


def test_data_parallel_ranks_share_out_the_same_global_batches() -> None:
    """2 ranks: accelerate shards torch's sampler by micro-batch (rank r takes every r-th), MLX shards each planned
    global micro-batch ``items[rank::world]``: per optimizer step, the same examples in total."""
    from accelerate.data_loader import BatchSamplerShard
    from torch.utils.data import BatchSampler

    from mindprint_mlx.distributed import shard
    from mindprint_torch.sampler import PlanSampler

    n, batch, world, seed = 8, 2, 2, 5
    for epoch in range(2):
        torch_ranks = []
        for rank in range(world):
            sampler = PlanSampler(n, seed)
            sampler.set_epoch(epoch)
            torch_ranks.append(list(BatchSamplerShard(BatchSampler(sampler, batch, drop_last=False), world, rank)))
        order = epoch_order(n, seed, epoch)
        mlx_steps = [order[i:i + batch * world] for i in range(0, n, batch * world)]
        torch_steps = [sorted(torch_ranks[0][k] + torch_ranks[1][k]) for k in range(len(torch_ranks[0]))]
        assert torch_steps == [sorted(s) for s in mlx_steps]
        assert [sorted(x for r in range(world) for x in shard(s, r, world)) for s in mlx_steps] == torch_steps
