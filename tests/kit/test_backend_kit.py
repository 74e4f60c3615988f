"""The backend kit on both backends: one prompt encoding, one method table, one gradient layout, one file reader."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mindprint_interfaces import AdapterConfig, ConfigError, create_backend
from mindprint_interfaces.data import Message, render_prompt
from mindprint_kit.adapter_files import read_adapter, read_tensors, write_adapter
from tests.random_adapter import write_random_adapter

SFT = [{"instruction": "What is two plus two?", "output": "Four, my friend."},
       {"instruction": "Name a colour.", "output": "Blue, like the sea."}]
PAIRS = [{"prompt": "Greet me.", "chosen": "Hello, dear friend!", "rejected": "Hi."},
         {"prompt": "Say goodbye.", "chosen": "Farewell, my friend!", "rejected": "Bye."}]


def _backends() -> list[Any]:
    return [create_backend(name, device="cpu", dtype="float32", seed=0) for name in ("pytorch", "mlx")]


@pytest.fixture(scope="module")
def plain_model_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with its chat template removed (prompts then render as BOS + text + newline)."""
    out = tmp_path_factory.mktemp("plain") / "model"
    shutil.copytree(tiny_model_dir, out)
    config = json.loads((out / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (out / "tokenizer_config.json").write_text(json.dumps(config))
    for extra in out.glob("chat_template.*"):
        extra.unlink()
    return out


@pytest.fixture(scope="module")
def random_adapter(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Non-zero A and B on q/k/v/o, so every LoRA gradient is non-zero."""
    return write_random_adapter(tiny_model_dir, tmp_path_factory.mktemp("adapter") / "random", seed=3, a_bound=0.1,
                                b_std=0.05)


@pytest.mark.torch
@pytest.mark.mlx
def test_a_text_prompt_encodes_the_same_on_both_backends_without_a_chat_template(plain_model_dir: Path) -> None:
    torch_model, mlx_model = (b.load_model(plain_model_dir) for b in _backends())
    assert not torch_model.tokenizer.has_chat_template
    expected = render_prompt(torch_model.tokenizer, [Message(role="user", content="The sky is")])
    assert torch_model.encode_prompt("The sky is") == mlx_model.encode_prompt("The sky is") == expected
    a = torch_model.generate("The sky is", max_new_tokens=5)
    b = mlx_model.generate("The sky is", max_new_tokens=5)
    assert a.prompt_tokens == b.prompt_tokens == len(expected)
    assert a.token_ids == b.token_ids


@pytest.mark.torch
@pytest.mark.mlx
def test_create_trainer_by_method_name(tiny_model_dir: Path, tmp_path: Path) -> None:
    for backend in _backends():
        model = backend.load_model(tiny_model_dir)
        sft = backend.create_trainer("sft", model, {"output_dir": str(tmp_path), "max_steps": 1})
        assert type(sft) is type(backend.create_sft_trainer(model, {"output_dir": str(tmp_path)}))
        dpo = backend.create_trainer("dpo", model, {"output_dir": str(tmp_path), "beta": 0.2})
        assert dpo.config.beta == 0.2  # type: ignore[attr-defined]
        with pytest.raises(ConfigError, match="unknown training method 'ppo'"):
            backend.create_trainer("ppo", model)
        orpo = backend.create_trainer("orpo", model, {"output_dir": str(tmp_path), "beta": 0.3})
        assert orpo.config.beta == 0.3  # type: ignore[attr-defined]
        with pytest.raises(ConfigError, match="trains without a reference model"):
            backend.create_trainer("orpo", model, ref_model=backend.load_model(tiny_model_dir))
        with pytest.raises(ConfigError, match="trains without a reference model"):
            backend.create_trainer("sft", model, ref_model=backend.load_model(tiny_model_dir))


@pytest.mark.torch
@pytest.mark.mlx
@pytest.mark.parametrize("method, records", [("sft", SFT), ("dpo", PAIRS)])
def test_batch_gradients_have_one_layout_and_agree_across_backends(method: str, records: list[dict[str, str]],
                                                                   tiny_model_dir: Path, random_adapter: Path) -> None:
    results = []
    for backend in _backends():
        model = backend.load_model(tiny_model_dir, adapter_path=random_adapter)
        trainer = backend.create_trainer(method, model, {"per_device_batch_size": 1, "output_dir": "unused",
                                                         "max_length": 64})
        results.append(trainer.batch_gradients(records))
    (loss_t, grads_t), (loss_m, grads_m) = results
    assert sorted(grads_t) == sorted(grads_m)
    assert len(grads_t) == 2 * 4 * 2  # A and B of q/k/v/o in both layers
    assert loss_t == pytest.approx(loss_m, rel=1e-5)
    for name, g in grads_t.items():
        assert g.shape == grads_m[name].shape, name
        scale = float(np.abs(g).max())
        assert scale > 0, name
        assert float(np.abs(g - grads_m[name]).max()) <= 1e-4 * scale + 1e-7, name


def test_bfloat16_adapter_files_read_as_their_exact_fp32_values(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    a = torch.randn(4, 8).bfloat16()
    b = torch.randn(6, 4).bfloat16()
    write_adapter(tmp_path / "ref", AdapterConfig(r=4, alpha=8, target_modules=("q_proj",)),
                  {(0, "self_attn.q_proj"): (a.float().numpy(), b.float().numpy())})
    save_file({"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": a,
               "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight": b},
              str(tmp_path / "ref" / "adapter_model.safetensors"))
    tensors = read_tensors(tmp_path / "ref" / "adapter_model.safetensors")
    assert all(v.dtype == np.float32 for v in tensors.values())
    _, weights = read_adapter(tmp_path / "ref")
    got_a, got_b = weights[(0, "self_attn.q_proj")]
    assert np.array_equal(got_a, a.float().numpy()) and np.array_equal(got_b, b.float().numpy())


def test_warmup_beyond_the_run_is_refused_by_name() -> None:
    from mindprint_kit import schedule

    schedule.check_warmup(8, 2, 1, 1.0, 0, 4)  # 4 steps, 4 warm-up steps: allowed
    with pytest.raises(ConfigError, match=r"warmup_steps=5 is more than the run's 4 optimizer steps") as info:
        schedule.check_warmup(8, 2, 1, 1.0, 0, 5)
    assert info.value.key == "warmup_steps"
    with pytest.raises(ConfigError, match="1000000000000"):
        schedule.check_warmup(8, 2, 1, 3.0, 20, 10**12)


@pytest.mark.torch
@pytest.mark.mlx
def test_both_backends_refuse_a_warmup_longer_than_the_run_before_training(tiny_model_dir: Path,
                                                                            tmp_path: Path) -> None:
    for backend in _backends():
        model = backend.load_model(tiny_model_dir)
        trainer = backend.create_sft_trainer(model, {"output_dir": str(tmp_path / backend.name), "max_steps": 2,
                                                     "warmup_steps": 10**12})
        with pytest.raises(ConfigError, match="warmup_steps=1000000000000 is more than the run's 2 optimizer steps"):
            trainer.train(SFT)
        assert not (tmp_path / backend.name / "adapter").exists()  # refused before any work


@pytest.mark.torch
@pytest.mark.mlx
def test_both_backends_refuse_a_lora_rank_above_the_model_width(tiny_model_dir: Path) -> None:
    hidden = json.loads((tiny_model_dir / "config.json").read_text())["hidden_size"]
    for backend in _backends():
        model = backend.load_model(tiny_model_dir)
        with pytest.raises(ConfigError, match=rf"lora_r=100000 is larger than the model's hidden size {hidden}"):
            backend.adapter_manager.add_adapter(model, AdapterConfig(r=100000, alpha=16))
        assert not model.has_adapter()
        backend.adapter_manager.add_adapter(model, AdapterConfig(r=hidden, alpha=16))  # the width itself is fine
        assert model.has_adapter()
