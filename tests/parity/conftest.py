"""Both backends on the same weights. Skipped (with the reason) when a backend is not installed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mindprint_interfaces import Backend, create_backend
from mindprint_interfaces.errors import MindprintError


def _backend(name: str) -> Backend:
    try:
        return create_backend(name, device="cpu", dtype="float32", seed=0)
    except MindprintError as exc:
        pytest.skip(f"{name} backend unavailable: {exc}")


@pytest.fixture(scope="session")
def torch_backend() -> Backend:
    return _backend("pytorch")


@pytest.fixture(scope="session")
def mlx_backend() -> Backend:
    return _backend("mlx")


@pytest.fixture(scope="session", params=["tiny", pytest.param("smollm2", marks=pytest.mark.slow)])
def weights_dir(request: pytest.FixtureRequest) -> Path:
    name: str = request.param
    fixture = "tiny_model_dir" if name == "tiny" else "smollm2_dir"
    path: Path = request.getfixturevalue(fixture)
    return path


@pytest.fixture(scope="session")
def random_adapter_dir(tmp_path_factory: pytest.TempPathFactory, weights_dir: Path) -> Path:
    """A PEFT adapter with random (non-zero) A and B, written by PEFT itself: a shared starting point."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    base = AutoModelForCausalLM.from_pretrained(str(weights_dir), dtype=torch.float32)
    cfg = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                     init_lora_weights=False, task_type="CAUSAL_LM")
    peft_model: Any = get_peft_model(base, cfg)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_" in name:
                p.mul_(0.5)  # keep the perturbation moderate so logits stay well-conditioned
    out = tmp_path_factory.mktemp("random-adapter")
    peft_model.save_pretrained(str(out))
    return out
