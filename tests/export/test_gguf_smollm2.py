"""Slow: SmolLM2 SFT -> GGUF export (q8_0, f16) on both backends, verified by transformers and by llama.cpp.

The export itself runs checks (a) weights read back by transformers' GGUF loader and (c) the chat template;
this test adds (b): llama.cpp (llama-cpp-python, the ``llamacpp`` uv group: ``uv sync --group llamacpp``,
built from its sdist) loads the f16 file, tokenizes the prompts as the training tokenizer does and
greedy-decodes the same tokens as the merged model. Without llama-cpp-python (b) is skipped with the reason.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mindprint_interfaces import create_backend
from mindprint_kit.gguf_export import LOGPROB_TOLERANCE

pytestmark = pytest.mark.slow

SFT = [{"instruction": "Who are you?", "output": "I am your gentle guide, friend."},
       {"instruction": "Name a colour.", "output": "Blue, dear friend, like the sea."},
       {"instruction": "What is two plus two?", "output": "Four, my friend."}]
PROMPTS = ["What is the capital of France?", "Name a colour.",
           "Write one sentence about the sea and the 3 ships on it."]
NEW_TOKENS = 16


@pytest.mark.parametrize("backend_name", ["pytorch", "mlx"])
def test_sft_export_verify(smollm2_dir: Path, tmp_path: Path, backend_name: str) -> None:
    backend = create_backend(backend_name, device="cpu", dtype="float32", seed=0)
    model = backend.load_model(smollm2_dir)
    cfg = {"per_device_batch_size": 3, "max_steps": 3, "learning_rate": 1e-3, "output_dir": str(tmp_path / "w"),
           "seed": 0}
    result = backend.create_sft_trainer(model, cfg).train(SFT)
    assert result.success, result.error_message
    measured = {}
    for quant in ("q8_0", "f16"):
        report = model.export_gguf(tmp_path / f"smollm2-{quant}.gguf", quant, ollama=quant == "f16")
        assert report.max_diff_to_rounded <= LOGPROB_TOLERANCE
        measured[quant] = report.max_diff_to_fp32
    print(f"\n{backend_name}: max |d log p| to the fp32 merged model: {measured}")
    assert measured["f16"] < measured["q8_0"]
    assert (tmp_path / "Modelfile").is_file()

    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python not installed (uv sync --group llamacpp)")
    merged = create_backend(backend_name, device="cpu", dtype="float32", seed=0).load_model(
        model.save_pretrained(tmp_path / "merged"))
    llm = llama_cpp.Llama(model_path=str(tmp_path / "smollm2-f16.gguf"), n_ctx=512, verbose=False, seed=0)
    for prompt in PROMPTS:
        messages = [{"role": "user", "content": prompt}]
        ids = merged.encode_prompt(messages)
        text = merged.tokenizer.apply_chat_template(messages, add_generation_prompt=True)
        assert llm.tokenize(text.encode("utf-8"), add_bos=False, special=True) == ids, prompt
        want = list(merged.generate(messages, max_new_tokens=NEW_TOKENS).token_ids)
        got: list[int] = []
        llm.reset()
        for tok in llm.generate(ids, top_k=1, top_p=1.0, min_p=0.0, temp=0.0, repeat_penalty=1.0, reset=True):
            if tok == llm.token_eos() or len(got) == len(want):
                break
            got.append(int(tok))
        assert got == want, (prompt, merged.tokenizer.decode(got), merged.tokenizer.decode(want))
    llm.close()
