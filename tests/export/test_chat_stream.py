"""Token streaming (``Model.stream``) and ``mindprint chat`` through a pipe, on both backends."""

from __future__ import annotations

from pathlib import Path

import pytest

from mindprint_interfaces import create_backend
from mindprint_kit.streaming import stream_text

from ..trainer.helpers import run_mindprint

BACKENDS = ["pytorch", "mlx"]


def test_stream_text_rules() -> None:
    words = ["Hel", "lo", " wor", "ld", "<", "/s", ">", "tail"]
    decode = "".join  # ids are indices into ``words`` below

    def dec(ids: list[int]) -> str:
        return decode(words[i] for i in ids)

    # a stop string split over tokens: nothing of it is emitted, and the pieces add up to generate's text
    pieces = list(stream_text(range(len(words)), dec, eos_id=None, stops=["</s>"]))
    assert "".join(pieces) == "Hello world"
    assert all("<" not in p for p in pieces) and len(pieces) >= 3
    # EOS ends the answer and is not part of it
    assert "".join(stream_text([0, 1, 3, 2], dec, eos_id=3)) == "Hello"


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_stream_equals_generate(tiny_model_dir: Path, backend_name: str) -> None:
    model = create_backend(backend_name, device="cpu", dtype="float32", seed=0).load_model(tiny_model_dir)
    prompt = [{"role": "user", "content": "What is the capital of France?"}]
    want = model.generate(prompt, max_new_tokens=12)
    assert want.token_ids, "the tiny model must produce tokens for this test to mean anything"
    pieces = list(model.stream(prompt, max_new_tokens=12))
    assert "".join(pieces) == want.text and len(pieces) > 1
    stop = want.text[2:4]
    cut = model.generate(prompt, max_new_tokens=12, stop=[stop])
    assert "".join(model.stream(prompt, max_new_tokens=12, stop=[stop])) == cut.text == want.text[:2]


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_chat_through_a_pipe(tiny_model_dir: Path, backend_name: str) -> None:
    model = create_backend(backend_name, device="cpu", dtype="float32", seed=0).load_model(tiny_model_dir)
    first = [{"role": "user", "content": "Name a colour."}]
    a1 = model.generate(first, max_new_tokens=8).text
    second = [*first, {"role": "assistant", "content": a1.strip()}, {"role": "user", "content": "Why?"}]
    a2 = model.generate(second, max_new_tokens=8).text
    fresh = model.generate([{"role": "user", "content": "Why?"}], max_new_tokens=8).text
    assert a2 != fresh, "history must change the answer for the /reset check to mean anything"
    stdin = "Name a colour.\nWhy?\n/reset\nWhy?\n/exit\nnever read\n"
    res = run_mindprint("chat", "--model", str(tiny_model_dir), "--backend", backend_name, "--device", "cpu",
                        "--dtype", "float32", "--max-new-tokens", "8", input=stdin)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.split("\n")
    assert lines[-1] == "" and len(lines) == 4, res.stdout
    assert lines[:3] == [a.replace("\n", " ") for a in (a1, a2, fresh)]
