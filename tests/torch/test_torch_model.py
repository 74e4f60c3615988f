from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from mindprint_interfaces import BackendMismatchError, ConfigError, Generation, GenerationConfig, Model
from mindprint_interfaces.data import IGNORE_INDEX
from mindprint_torch import PyTorchModel, TorchBackend, TorchModel

pytestmark = pytest.mark.torch


class MLXModel:
    """Stands in for mindprint_mlx's model class (only its type name matters)."""


def test_load_and_protocol(tiny: PyTorchModel) -> None:
    assert isinstance(tiny, Model)
    assert TorchModel is PyTorchModel
    assert tiny.backend_name == "pytorch"
    assert tiny.device == "cpu" and tiny.dtype == "float32"
    assert tiny.num_layers == 2 and not tiny.has_adapter()
    assert tiny.tokenizer.has_chat_template


def test_missing_model_path_raises(backend: TorchBackend, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        backend.load_model(tmp_path / "nope")


def test_generate_returns_a_generation(tiny: PyTorchModel) -> None:
    out = tiny.generate("What is the capital of France?", max_new_tokens=6)
    assert isinstance(out, Generation)
    assert isinstance(out.token_ids, tuple) and all(isinstance(t, int) for t in out.token_ids)
    assert out.text == tiny.tokenizer.decode(out.token_ids)
    assert out.prompt_tokens > 0
    if out.finish_reason == "length":
        assert len(out.token_ids) == 6
    # greedy is deterministic; token-id and message prompts give the same result as the rendered string
    assert tiny.generate("What is the capital of France?", max_new_tokens=6) == out
    ids = tiny.encode_prompt("What is the capital of France?")
    assert tiny.generate(ids, GenerationConfig(max_new_tokens=6)).token_ids == out.token_ids
    msgs = [{"role": "user", "content": "What is the capital of France?"}]
    assert tiny.generate(msgs, max_new_tokens=6).token_ids == out.token_ids


def test_generate_honours_stop_strings(tiny: PyTorchModel) -> None:
    free = tiny.generate("hello", max_new_tokens=12)
    assert len(free.text) > 2
    stop = free.text[2:4]
    cut = tiny.generate("hello", max_new_tokens=12, stop=(stop,))
    assert cut.finish_reason == "stop"
    assert stop not in cut.text and free.text.startswith(cut.text)


def test_sampling_with_seed_is_reproducible(tiny: PyTorchModel) -> None:
    a = tiny.generate("hello", max_new_tokens=8, temperature=1.0, seed=3)
    b = tiny.generate("hello", max_new_tokens=8, temperature=1.0, seed=3)
    assert a == b


def test_forward_logits_and_loss(tiny: PyTorchModel) -> None:
    ids = [[5, 6, 7, 8, 9], [10, 11, 12]]
    labels = [[IGNORE_INDEX, IGNORE_INDEX, 7, 8, 9], [IGNORE_INDEX, 11, 12]]
    out = tiny.forward(ids, labels=labels)
    assert isinstance(out.logits, torch.Tensor) and out.logits.shape[:2] == (2, 5)
    # loss = mean CE over the 5 labelled tokens, checked against log-softmax by hand
    logp = torch.log_softmax(out.logits.float(), -1)
    picks = [logp[0, 1, 7], logp[0, 2, 8], logp[0, 3, 9], logp[1, 0, 11], logp[1, 1, 12]]
    assert out.loss == pytest.approx(-float(sum(picks)) / 5, abs=1e-5)
    # right padding does not change the logits of the real tokens
    alone = tiny.forward([[10, 11, 12]]).logits
    assert torch.allclose(alone[0], out.logits[1, :3], atol=1e-5)


def test_sequence_logprobs_match_next_token_logprobs(tiny: PyTorchModel) -> None:
    prompt, completion = [5, 6, 7], [8, 9]
    total = tiny.sequence_logprobs([prompt, [1, 2]], [completion, [3]])
    step1 = tiny.next_token_logprobs(prompt)[8]
    step2 = tiny.next_token_logprobs(prompt + [8])[9]
    assert total[0] == pytest.approx(step1 + step2, abs=1e-4)
    assert total[1] == pytest.approx(tiny.next_token_logprobs([1, 2])[3], abs=1e-4)
    lp = tiny.next_token_logprobs(prompt)
    assert math.isclose(sum(math.exp(v) for v in lp), 1.0, rel_tol=1e-4)


def test_backend_mismatch_error(backend: TorchBackend) -> None:
    with pytest.raises(BackendMismatchError, match="Expected PyTorchModel, got MLXModel"):
        backend.create_sft_trainer(MLXModel(), {})  # type: ignore[arg-type]
    with pytest.raises(BackendMismatchError, match="Expected PyTorchModel, got MLXModel"):
        backend.create_dpo_trainer(MLXModel(), {})  # type: ignore[arg-type]
    with pytest.raises(BackendMismatchError, match="Expected PyTorchModel, got MLXModel"):
        backend.adapter_manager.save(MLXModel(), "x")  # type: ignore[arg-type]


def test_wrap_a_user_model(backend: TorchBackend, tiny: PyTorchModel) -> None:
    wrapped = backend.wrap(tiny.hf_model, tiny.hf_tokenizer)
    assert isinstance(wrapped, PyTorchModel)
    assert wrapped.generate("hi", max_new_tokens=3).token_ids == tiny.generate("hi", max_new_tokens=3).token_ids
    with pytest.raises(TypeError):
        backend.wrap(object(), tiny.hf_tokenizer)
