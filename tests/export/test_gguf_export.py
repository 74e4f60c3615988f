"""GGUF export on the tiny Llama: read back by transformers' GGUF loader and gguf-py's reader, refusals, atomicity."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from gguf import GGUFReader

from mindprint_kit import gguf_export
from mindprint_kit.gguf_export import GGUFExportError, export_gguf

from ..random_adapter import write_random_adapter
from ..trainer.helpers import run_mindprint


def _field(reader: GGUFReader, key: str) -> Any:
    return reader.fields[key].contents()


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


@pytest.mark.parametrize("quant", ["f16", "q8_0"])
def test_round_trip_through_transformers(tiny_model_dir: Path, tmp_path: Path, quant: str) -> None:
    out = tmp_path / f"tiny-{quant}.gguf"
    report = export_gguf(tiny_model_dir, out, quant)
    assert report.path == out and out.is_file()
    assert report.max_diff_to_rounded <= gguf_export.LOGPROB_TOLERANCE
    # the rounding itself moves the log-probs (so the check above compares against the right reference)
    assert report.max_diff_to_fp32 > (1e-3 if quant == "f16" else 1e-2)
    want = {"f16": "F16", "q8_0": "Q8_0"}[quant]
    assert report.tensor_types == {want: 15, "F32": 5}
    reader = GGUFReader(str(out))
    tokenizer_config = json.loads((tiny_model_dir / "tokenizer_config.json").read_text())
    assert _field(reader, "general.architecture") == "llama"
    assert _field(reader, "tokenizer.ggml.eos_token_id") == 2  # <|im_end|>, as training ends answers
    assert _field(reader, "tokenizer.ggml.padding_token_id") == 0
    assert "tokenizer.ggml.bos_token_id" not in reader.fields  # the tiny tokenizer has none
    template = tokenizer_config.get("chat_template") or (tiny_model_dir / "chat_template.jinja").read_text()
    assert _field(reader, "tokenizer.chat_template") == template
    assert {t.name: t.tensor_type.name for t in reader.tensors}["blk.0.attn_q.weight"] == want
    assert _leftovers(tmp_path) == []


def test_wrong_tensor_layout_fails_and_leaves_nothing(tiny_model_dir: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # Without llama.cpp's q/k row permutation the file loads but answers wrongly: the check must catch it.
    monkeypatch.setattr(gguf_export, "_permute", lambda w, n_head: w)
    out = tmp_path / "bad.gguf"
    with pytest.raises(GGUFExportError, match="differ from the merged model rounded"):
        export_gguf(tiny_model_dir, out, "f16")
    assert not out.exists() and _leftovers(tmp_path) == []


def test_template_mismatch_fails(tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import gguf

    original = gguf.GGUFWriter.add_chat_template

    def wrong_template(self: Any, value: Any) -> None:
        original(self, value.replace("<|im_start|>", "<|im_start|> ", 1))

    monkeypatch.setattr(gguf.GGUFWriter, "add_chat_template", wrong_template)
    out = tmp_path / "bad.gguf"
    with pytest.raises(GGUFExportError, match="chat template differs"):
        export_gguf(tiny_model_dir, out, "f16")
    assert not out.exists() and _leftovers(tmp_path) == []


def test_refusals(tiny_model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(GGUFExportError, match="q4_k_m: not supported"):
        export_gguf(tiny_model_dir, tmp_path / "x.gguf", "q4_k_m")
    with pytest.raises(GGUFExportError, match="unknown quantization"):
        export_gguf(tiny_model_dir, tmp_path / "x.gguf", "q3")
    other = tmp_path / "qwen"
    shutil.copytree(tiny_model_dir, other)
    config = json.loads((other / "config.json").read_text())
    config["model_type"] = "qwen2"
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises(GGUFExportError, match="model_type 'qwen2' is not exportable"):
        export_gguf(other, tmp_path / "x.gguf", "f16")
    assert not (tmp_path / "x.gguf").exists()


def test_cli_export_with_ollama_modelfile(tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "m" / "tiny.gguf"
    res = run_mindprint("export", str(tiny_model_dir), str(out), "--quant", "q4_0", "--ollama")
    assert res.returncode == 0, res.stderr
    assert "GGUF written" in res.stdout and out.is_file()
    modelfile = (out.parent / "Modelfile").read_text()
    assert modelfile.startswith(f"FROM {out.resolve()}\n")
    assert "TEMPLATE \"\"\"" in modelfile and "<|im_start|>{{ .Role }}" in modelfile
    assert 'PARAMETER stop "<|im_end|>"' in modelfile
    bad = run_mindprint("export", str(tiny_model_dir), str(tmp_path / "x.gguf"), "--quant", "q4_k_m")
    assert bad.returncode != 0 and "q4_k_m: not supported" in bad.stderr


@pytest.fixture(scope="module")
def random_adapter(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Non-zero A and B on q/k/v/o: merging it moves the log-probs, so a lost merge shows."""
    return write_random_adapter(tiny_model_dir, tmp_path_factory.mktemp("adapter") / "random", seed=5, a_bound=0.3,
                                b_std=0.2)


@pytest.mark.parametrize("backend_name", ["pytorch", "mlx"])
def test_model_export_merges_the_adapter(tiny_model_dir: Path, random_adapter: Path, tmp_path: Path,
                                         backend_name: str) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    from mindprint_interfaces import create_backend

    backend = create_backend(backend_name, device="cpu", dtype="float32", seed=0)
    model = backend.load_model(tiny_model_dir, adapter_path=random_adapter)
    out = tmp_path / "adapted.gguf"
    report = model.export_gguf(out, "f32")
    assert report.max_diff_to_rounded <= gguf_export.LOGPROB_TOLERANCE and report.max_diff_to_fp32 <= 1e-4
    ids = model.encode_prompt("What is the capital of France?")
    want = torch.tensor(model.next_token_logprobs(ids))
    base = torch.tensor(backend.load_model(tiny_model_dir).next_token_logprobs(ids))
    assert float((want - base).abs().max()) > 0.05, "the adapter must matter for this test to mean anything"
    loaded = AutoModelForCausalLM.from_pretrained(str(tmp_path), gguf_file=out.name, dtype=torch.float32)
    with torch.no_grad():
        got = torch.log_softmax(loaded(input_ids=torch.tensor([ids])).logits[0, -1].float(), dim=-1)
    assert float((got - want).abs().max()) < 1e-3
    assert _leftovers(tmp_path) == []


def test_llama_cpp_decodes_the_tiny_export_like_the_model(tiny_model_dir: Path, tmp_path: Path) -> None:
    """llama.cpp itself (the ``llamacpp`` uv group; skipped without it) on the tiny f32 file: same prompt
    tokens, same greedy tokens as the model the file came from."""
    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python not installed (uv sync --group llamacpp)")
    from mindprint_interfaces import create_backend

    out = tmp_path / "tiny.gguf"
    export_gguf(tiny_model_dir, out, "f32")
    model = create_backend("pytorch", device="cpu", dtype="float32", seed=0).load_model(tiny_model_dir)
    llm = llama_cpp.Llama(model_path=str(out), n_ctx=256, verbose=False)
    try:
        for prompt in ("What is the capital of France?", "Name a colour.", "Say 12 words."):
            messages = [{"role": "user", "content": prompt}]
            ids = model.encode_prompt(messages)
            text = model.tokenizer.apply_chat_template(messages, add_generation_prompt=True)
            assert llm.tokenize(text.encode("utf-8"), add_bos=False, special=True) == ids
            want = list(model.generate(messages, max_new_tokens=12).token_ids)
            got: list[int] = []
            for tok in llm.generate(ids, top_k=1, top_p=1.0, min_p=0.0, temp=0.0, repeat_penalty=1.0, reset=True):
                if tok == llm.token_eos() or len(got) == len(want):
                    break
                got.append(int(tok))
            assert got == want, prompt
    finally:
        llm.close()
