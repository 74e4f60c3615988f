"""The bench's raw peers start from mindprint's initial adapter (the kit's draw), so their fixed-set losses
after training compare like for like with mindprint's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mindprint_interfaces import AdapterConfig, create_backend
from tools.bench.common import TARGET_MODULES

CONFIG = AdapterConfig(r=4, alpha=8, target_modules=TARGET_MODULES)


def _same(a: Any, b: Any) -> None:
    assert set(a) == set(b)
    for site in a:
        for x, y in zip(a[site], b[site], strict=True):
            np.testing.assert_array_equal(x, y, err_msg=str(site))


@pytest.mark.torch
def test_raw_trl_peer_starts_from_mindprints_adapter(tiny_model_dir: Path) -> None:
    import torch
    from peft import LoraConfig, get_peft_model, get_peft_model_state_dict
    from transformers import AutoModelForCausalLM

    from mindprint_interfaces.adapter_format import parse_peft_key
    from mindprint_torch.adapters import add_adapter, live_weights
    from tools.bench.raw_trl import kit_initial_adapter

    ours: Any = create_backend("pytorch", device="cpu", dtype="float32").load_model(tiny_model_dir)
    add_adapter(ours, CONFIG, seed=9)
    base = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32)
    peer: Any = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=list(TARGET_MODULES),
                                                task_type="CAUSAL_LM"))
    kit_initial_adapter(peer, 9)
    halves: dict[tuple[int, str], dict[str, Any]] = {}
    for name, value in get_peft_model_state_dict(peer).items():
        key = parse_peft_key(name)
        halves.setdefault((key.layer, key.module), {})[key.matrix] = value.numpy()
    _same(live_weights(ours), {site: (h["A"], h["B"]) for site, h in halves.items()})


@pytest.mark.mlx
def test_raw_mlx_lm_peer_starts_from_mindprints_adapter(tiny_model_dir: Path) -> None:
    from mlx_lm import load
    from mlx_lm.tuner.utils import linear_to_lora_layers

    from mindprint_mlx.adapters import live_weights
    from tools.bench.raw_mlx_lm import model_config, set_initial_weights

    ours: Any = create_backend("mlx", device="cpu", dtype="float32").load_model(tiny_model_dir)
    ours.add_adapter(CONFIG, seed=9)
    peer, _ = load(str(tiny_model_dir), model_config=model_config(str(tiny_model_dir)))
    peer.freeze()
    linear_to_lora_layers(peer, len(peer.layers), {"rank": 4, "scale": 2.0, "dropout": 0.0,
                                                    "keys": [f"self_attn.{m}" for m in TARGET_MODULES]})
    set_initial_weights(peer, 9)
    _same(live_weights(ours.module), live_weights(peer))
