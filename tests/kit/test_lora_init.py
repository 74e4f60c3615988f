"""The kit's initial LoRA draw: PEFT's rule (kaiming_uniform(a=sqrt(5)) on A, zero B), keyed by site, not by order."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mindprint_kit.lora_init import initial_lora_weights, lora_a_init


def test_a_is_uniform_within_peft_bound_and_b_is_zero() -> None:
    weights = initial_lora_weights({(0, "self_attn.q_proj"): (64, 256, 32)}, seed=5)
    a, b = weights[(0, "self_attn.q_proj")]
    assert a.shape == (64, 256) and b.shape == (32, 64)
    assert a.dtype == np.float32 and b.dtype == np.float32
    bound = 1 / math.sqrt(256)
    assert np.abs(a).max() <= bound
    assert np.abs(a).max() > 0.99 * bound  # fills the interval: uniform, not a narrower law
    assert abs(float(a.std()) - bound / math.sqrt(3)) < 0.02 * bound  # the std of U(-b, b)
    assert not b.any()


def test_the_bound_is_torchs_kaiming_uniform_with_a_sqrt5() -> None:
    torch = pytest.importorskip("torch")
    w = torch.empty(64, 300)
    torch.nn.init.kaiming_uniform_(w, a=math.sqrt(5))
    ours = lora_a_init(0, 0, "mlp.up_proj", 64, 300)
    assert float(w.abs().max()) == pytest.approx(float(np.abs(ours).max()), rel=2e-3)
    assert float(w.std()) == pytest.approx(float(ours.std()), rel=3e-2)


def test_each_site_has_its_own_stream_independent_of_the_others() -> None:
    sites = {(0, "self_attn.q_proj"): (4, 16, 16), (0, "self_attn.v_proj"): (4, 16, 8), (1, "mlp.up_proj"): (4, 16, 32)}
    full = initial_lora_weights(sites, seed=42)
    subset = initial_lora_weights({(1, "mlp.up_proj"): (4, 16, 32)}, seed=42)
    np.testing.assert_array_equal(full[(1, "mlp.up_proj")][0], subset[(1, "mlp.up_proj")][0])
    reordered = initial_lora_weights(dict(reversed(list(sites.items()))), seed=42)
    for site in sites:
        np.testing.assert_array_equal(full[site][0], reordered[site][0])
    a_q, a_v = full[(0, "self_attn.q_proj")][0], full[(0, "self_attn.v_proj")][0]
    assert not np.allclose(a_q, a_v)  # same shape, another name: another draw
    other = initial_lora_weights(sites, seed=43)
    assert all(not np.allclose(full[s][0], other[s][0]) for s in sites)


def test_negative_seeds_draw_and_bad_shapes_are_refused() -> None:
    assert lora_a_init(-1, 0, "mlp.up_proj", 2, 4).shape == (2, 4)
    assert not np.allclose(lora_a_init(-1, 0, "mlp.up_proj", 2, 4), lora_a_init(1, 0, "mlp.up_proj", 2, 4))
    with pytest.raises(ValueError, match="layers.0.mlp.up_proj"):
        lora_a_init(0, 0, "mlp.up_proj", 2, 0)
