"""MLXModel behaviour: forward loss, log-probs, generation (same Generation type as torch), device manager."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mindprint_interfaces import DeviceUnavailableError, Generation, GenerationConfig
from mindprint_interfaces.data import IGNORE_INDEX
from mindprint_mlx.device import MLXDeviceManager

pytestmark = pytest.mark.mlx


def test_forward_loss_is_masked_shifted_mean(tiny: Any) -> None:
    ids = [[5, 17, 42, 99, 7, 250], [9, 8, 7, 6, 0, 0]]
    labels = [[IGNORE_INDEX, IGNORE_INDEX, 42, 99, 7, 250], [IGNORE_INDEX, 8, 7, 6, IGNORE_INDEX, IGNORE_INDEX]]
    mask = [[1] * 6, [1, 1, 1, 1, 0, 0]]
    out = tiny.forward(ids, labels=labels, attention_mask=mask)
    logits = np.array(out.logits, dtype=np.float64)
    terms = []
    for b in range(2):
        for t in range(5):
            target = labels[b][t + 1]
            if target != IGNORE_INDEX:
                row = logits[b, t]
                terms.append(math.log(np.exp(row - row.max()).sum()) + row.max() - row[target])
    assert out.loss == pytest.approx(sum(terms) / len(terms), rel=1e-5)


def test_left_padding_is_rejected(tiny: Any) -> None:
    with pytest.raises(ValueError, match="right-padded"):
        tiny.forward([[0, 5, 6]], attention_mask=[[0, 1, 1]])


def test_sequence_logprobs_match_next_token_logprobs(tiny: Any) -> None:
    prompt, completion = [5, 17, 42], [99, 7]
    total = tiny.sequence_logprobs([prompt], [completion])[0]
    step1 = tiny.next_token_logprobs(prompt)[99]
    step2 = tiny.next_token_logprobs(prompt + [99])[7]
    assert total == pytest.approx(step1 + step2, abs=1e-4)
    batched = tiny.sequence_logprobs([prompt, [1, 2]], [completion, [3, 4, 5]])
    assert batched[0] == pytest.approx(total, abs=1e-4)
    assert len(tiny.next_token_logprobs(prompt)) == 384
    assert math.fsum(math.exp(v) for v in tiny.next_token_logprobs(prompt)) == pytest.approx(1.0, abs=1e-4)


def test_generate_returns_generation(tiny: Any) -> None:
    gen = tiny.generate("What is two plus two?", max_new_tokens=6)
    assert isinstance(gen, Generation)
    assert gen.finish_reason in ("stop", "length")
    assert 0 < len(gen.token_ids) <= 6 and all(isinstance(t, int) for t in gen.token_ids)
    assert gen.prompt_tokens > 0
    assert gen.text == tiny.tokenizer.decode(list(gen.token_ids))
    again = tiny.generate("What is two plus two?", GenerationConfig(max_new_tokens=6))
    assert again == gen  # greedy is deterministic
    by_messages = tiny.generate([{"role": "user", "content": "What is two plus two?"}], max_new_tokens=6)
    assert by_messages.token_ids == gen.token_ids
    by_ids = tiny.generate(tiny.prompt_ids("What is two plus two?"), max_new_tokens=6)
    assert by_ids.token_ids == gen.token_ids


def test_generate_greedy_matches_transformers(tiny: Any, tiny_model_dir: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    ids = tiny.prompt_ids("The capital of France is")
    ours = tiny.generate(ids, max_new_tokens=8)
    hf = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32)
    with torch.no_grad():
        out = hf.generate(torch.tensor([ids]), max_new_tokens=len(ours.token_ids), do_sample=False,
                          eos_token_id=None, pad_token_id=0)
    assert tuple(out[0, len(ids):].tolist()) == ours.token_ids


def test_generate_length_and_stop_strings(tiny: Any) -> None:
    gen = tiny.generate("Hello", max_new_tokens=5)
    assert gen.finish_reason == "length" and len(gen.token_ids) == 5
    assert gen.text, "tiny model should produce visible text"
    stop = gen.text[2:4] if len(gen.text) >= 4 else gen.text[-1]
    stopped = tiny.generate("Hello", max_new_tokens=5, stop=(stop,))
    assert stopped.finish_reason == "stop"
    assert stop not in stopped.text
    assert gen.text.startswith(stopped.text)


def test_sampling_is_seeded(tiny: Any) -> None:
    a = tiny.generate("Hello", max_new_tokens=8, temperature=1.5, seed=3)
    b = tiny.generate("Hello", max_new_tokens=8, temperature=1.5, seed=3)
    assert a.token_ids == b.token_ids


def test_device_manager() -> None:
    dm = MLXDeviceManager("auto", "auto")
    assert dm.device == "cpu" and dm.dtype == "float32"  # no Metal on Linux
    assert dm.available_devices() == ["cpu"]
    with pytest.warns(RuntimeWarning, match="Metal is not available"):
        assert MLXDeviceManager("gpu").device == "cpu"
    with pytest.raises(DeviceUnavailableError, match="Metal is not available"):
        MLXDeviceManager("metal")
    with pytest.raises(DeviceUnavailableError, match="CUDA"):
        MLXDeviceManager("cuda")
    info = dm.memory_info()
    assert {"used", "peak", "total"} <= set(info) and info["total"] > 0
    dm.synchronize()
