"""Verified GGUF export of a merged HF directory (what ``Model.save_pretrained`` writes), for llama.cpp/Ollama.

One implementation for every backend: both backends first write their verified merged directory and
then call :func:`export_gguf`. The file is written with gguf-py (its writer, its tensor-name map for
the architecture and its reference quantizers), into a temporary sibling of ``out``, and moved into
place only after it passed the checks of readers we did not write:

* **weights** — transformers' GGUF loader reads the file back; its next-token log-probs must equal those
  of the merged model with every tensor rounded to the type the file declares (gguf-py's
  ``quantize``/``dequantize``) within :data:`LOGPROB_TOLERANCE`. The difference to the unrounded fp32
  model (the cost of the quantization itself) is measured and reported;
* **chat template** — the template in the file's metadata, rendered by transformers from the GGUF, must give
  the same text as the training tokenizer on a multi-turn conversation, and the special token ids
  (BOS/EOS/pad) must be the ones training used.

A failed check raises :class:`GGUFExportError` and leaves nothing at ``out``. Needs the ``gguf`` extra
(``mindprint-kit[gguf]``: gguf, transformers, torch).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mindprint_interfaces.errors import MindprintError
from mindprint_interfaces.fileio import atomic_write_text

# Our names -> gguf-py's tensor type and the file type llama.cpp reads from ``general.file_type``.
# K-quants (q4_k_m, ...) are not offered: gguf-py ships no quantizer for them (only dequantizers),
# so a file of that type could not be checked against a reference rounding.
QUANT_TYPES = ("f32", "f16", "bf16", "q8_0", "q4_0")
NOT_SUPPORTED = {
    "q4_k_m": "gguf-py has no K-quant quantizer; export q8_0 or f16 and run llama.cpp's llama-quantize on it",
    "q4_k_s": "gguf-py has no K-quant quantizer; export q8_0 or f16 and run llama.cpp's llama-quantize on it",
    "q5_k_m": "gguf-py has no K-quant quantizer; export q8_0 or f16 and run llama.cpp's llama-quantize on it",
    "q6_k": "gguf-py has no K-quant quantizer; export q8_0 or f16 and run llama.cpp's llama-quantize on it",
}
# transformers ``model_type`` -> gguf-py architecture name. Only families whose tensor layout, rope and
# tokenizer we map and verify here; anything else is refused by name.
EXPORTABLE_FAMILIES = {"llama": "LLAMA"}
# Pre-tokenizers llama.cpp knows, recognised from tokenizer.json (llama.cpp's converter identifies them
# by hashing a tokenization; we read the pre-tokenizer definition instead).
LOGPROB_TOLERANCE = 1e-4
PROBE_CONVERSATION = (
    {"role": "system", "content": "You answer briefly."},
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "Paris, on the Seine."},
    {"role": "user", "content": "And of Italy? Answer in 3 words."},
)
PROBE_TEXT = "The quick brown fox jumps over the lazy dog. Merge check 0123456789."


class GGUFExportError(MindprintError, RuntimeError):
    """The model cannot be exported, or the written file failed a check (nothing is left at the target)."""


@dataclass(frozen=True)
class GGUFExportReport:
    """What :func:`export_gguf` wrote and measured."""

    path: Path
    quant: str
    tensor_types: Mapping[str, int]
    """How many tensors of each GGML type the file holds (1-D tensors are always f32)."""
    max_diff_to_rounded: float
    """Max |log p| difference (all positions, full vocabulary) of the file, read by transformers, against the
    merged model with each tensor rounded to its declared type — must be <= LOGPROB_TOLERANCE."""
    max_diff_to_fp32: float
    """The same against the unrounded fp32 merged model: what the quantization itself costs."""
    special_tokens: Mapping[str, int | None] = field(default_factory=dict)
    chat_template: str | None = None
    modelfile: Path | None = None


def check_quant(quant: str) -> str:
    q = quant.lower()
    if q in NOT_SUPPORTED:
        raise GGUFExportError(f"--quant {quant}: not supported ({NOT_SUPPORTED[q]})")
    if q not in QUANT_TYPES:
        raise GGUFExportError(f"--quant {quant}: unknown quantization; choose one of {', '.join(QUANT_TYPES)}")
    return q


def _read_config(model_dir: Path) -> dict[str, Any]:
    path = model_dir / "config.json"
    if not path.is_file():
        raise GGUFExportError(f"{model_dir}: no config.json; export needs a merged HF model directory "
                              "(mindprint merge, or a run directory with a merged model)")
    config: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    family = config.get("model_type")
    if family not in EXPORTABLE_FAMILIES:
        raise GGUFExportError(
            f"{path}: model_type {family!r} is not exportable to GGUF; exportable families: "
            f"{', '.join(sorted(EXPORTABLE_FAMILIES))}")
    return config


def _rope_theta(config: Mapping[str, Any], where: Path) -> float:
    params = config.get("rope_parameters") or {}
    scaling = config.get("rope_scaling") or {}
    rope_type = params.get("rope_type") or scaling.get("rope_type") or scaling.get("type") or "default"
    if rope_type != "default":
        raise GGUFExportError(f"{where}: rope type {rope_type!r} (rope_parameters/rope_scaling) is not exported; "
                              "only the default rope is mapped")
    theta = params.get("rope_theta", config.get("rope_theta", 10000.0))
    return float(theta)


def _check_supported(config: Mapping[str, Any], where: Path) -> None:
    for key in ("attention_bias", "mlp_bias"):
        if config.get(key):
            raise GGUFExportError(f"{where}: {key}=true is not exported (bias tensors are not mapped)")
    heads = int(config["num_attention_heads"])
    head_dim = config.get("head_dim")
    if head_dim is not None and int(head_dim) * heads != int(config["hidden_size"]):
        raise GGUFExportError(f"{where}: head_dim {head_dim} != hidden_size / num_attention_heads; not exported")


def _pre_tokenizer(tokenizer_json: Mapping[str, Any], where: Path) -> str:
    """llama.cpp's ``tokenizer.ggml.pre`` for the byte-level BPE pre-tokenizers we recognise."""
    pre = tokenizer_json.get("pre_tokenizer") or {}

    def is_byte_level(p: Mapping[str, Any]) -> bool:
        return p.get("type") == "ByteLevel" and p.get("use_regex", True) is True

    if is_byte_level(pre):
        return "gpt-2"  # llama.cpp's name for the GPT-2 regex
    if pre.get("type") == "Sequence":
        parts = pre.get("pretokenizers") or []
        if (len(parts) == 2 and parts[0].get("type") == "Digits" and parts[0].get("individual_digits")
                and is_byte_level(parts[1])):
            return "smollm"
    raise GGUFExportError(f"{where}: pre-tokenizer {json.dumps(pre)[:200]} is not one llama.cpp is known to "
                          "reproduce (byte-level BPE, optionally with individual digits); not exported")


def _merges(tokenizer_json: Mapping[str, Any]) -> list[str]:
    merges = (tokenizer_json.get("model") or {}).get("merges") or []
    return [m if isinstance(m, str) else " ".join(m) for m in merges]


def _permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """HF's rotate-half q/k rows -> GGML's interleaved rope layout (what llama.cpp's converter does)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _tensor_type(quant: str, array: np.ndarray) -> Any:
    import gguf

    T = gguf.GGMLQuantizationType
    if array.ndim < 2 or quant == "f32":
        return T.F32
    qtype = {"f16": T.F16, "bf16": T.BF16, "q8_0": T.Q8_0, "q4_0": T.Q4_0}[quant]
    block = gguf.GGML_QUANT_SIZES[qtype][0]
    if array.shape[-1] % block != 0:
        return T.F16  # llama.cpp's converter falls back the same way for rows that do not fill a block
    return qtype


def round_to(array: np.ndarray, qtype: Any) -> np.ndarray:
    """``array`` as the file holds it: quantized and dequantized by gguf-py's reference quantizers (fp32)."""
    from gguf import quants

    data = np.ascontiguousarray(array, dtype=np.float32)
    return np.asarray(quants.dequantize(quants.quantize(data, qtype), qtype), dtype=np.float32).reshape(array.shape)


def _load_weights(model_dir: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise GGUFExportError(f"{model_dir}: no *.safetensors weights")
    weights: dict[str, np.ndarray] = {}
    for f in files:
        for name, arr in load_file(str(f)).items():
            weights[name] = arr.astype(np.float32)
    return weights


def _hf_tokenizer(model_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True, trust_remote_code=False)


def special_token_ids(tokenizer: Any) -> dict[str, int | None]:
    def tid(name: str) -> int | None:
        value = getattr(tokenizer, name, None)
        return int(value) if value is not None else None

    return {"bos": tid("bos_token_id"), "eos": tid("eos_token_id"), "pad": tid("pad_token_id"),
            "unk": tid("unk_token_id")}


def write_gguf(model_dir: str | Path, out: str | Path, quant: str = "f16") -> dict[str, Any]:
    """Write ``model_dir`` to ``out`` as GGUF (no checks); returns the GGML type of every exported HF tensor."""
    import gguf

    model_dir, out = Path(model_dir), Path(out)
    quant = check_quant(quant)
    config = _read_config(model_dir)
    where = model_dir / "config.json"
    _check_supported(config, where)
    arch = getattr(gguf.MODEL_ARCH, EXPORTABLE_FAMILIES[config["model_type"]])
    n_layers = int(config["num_hidden_layers"])
    n_head = int(config["num_attention_heads"])
    n_kv = int(config.get("num_key_value_heads") or n_head)
    hidden = int(config["hidden_size"])
    vocab_size = int(config["vocab_size"])
    tie = bool(config.get("tie_word_embeddings", False))

    tok_path = model_dir / "tokenizer.json"
    if not tok_path.is_file():
        raise GGUFExportError(f"{model_dir}: no tokenizer.json (a fast byte-level BPE tokenizer is needed)")
    tokenizer_json = json.loads(tok_path.read_text(encoding="utf-8"))
    if (tokenizer_json.get("model") or {}).get("type") != "BPE":
        raise GGUFExportError(f"{tok_path}: tokenizer model {tokenizer_json.get('model', {}).get('type')!r} "
                              "is not exported (byte-level BPE only)")
    pre = _pre_tokenizer(tokenizer_json, tok_path)
    tokenizer = _hf_tokenizer(model_dir)

    writer = gguf.GGUFWriter(str(out), gguf.MODEL_ARCH_NAMES[arch])
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name(model_dir.name)
    writer.add_context_length(int(config.get("max_position_embeddings", 2048)))
    writer.add_embedding_length(hidden)
    writer.add_block_count(n_layers)
    writer.add_feed_forward_length(int(config["intermediate_size"]))
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_kv)
    writer.add_rope_freq_base(_rope_theta(config, where))
    writer.add_layer_norm_rms_eps(float(config.get("rms_norm_eps", 1e-6)))
    writer.add_rope_dimension_count(hidden // n_head)
    writer.add_vocab_size(vocab_size)
    file_type = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
                 "bf16": gguf.LlamaFileType.MOSTLY_BF16, "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
                 "q4_0": gguf.LlamaFileType.MOSTLY_Q4_0}[quant]
    writer.add_file_type(file_type)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)

    # Vocabulary, as llama.cpp's converter lays out a byte-level BPE vocabulary.
    reverse = {i: t for t, i in tokenizer.get_vocab().items()}
    added = tokenizer.added_tokens_decoder
    tokens: list[str] = []
    types: list[int] = []
    for i in range(vocab_size):
        if i not in reverse:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        elif i in added:
            tokens.append(reverse[i])
            types.append(gguf.TokenType.CONTROL if added[i].special else gguf.TokenType.USER_DEFINED)
        else:
            tokens.append(reverse[i])
            types.append(gguf.TokenType.NORMAL)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(_merges(tokenizer_json))
    special = special_token_ids(tokenizer)
    if special["bos"] is not None:
        writer.add_bos_token_id(special["bos"])
    if special["eos"] is not None:
        writer.add_eos_token_id(special["eos"])
    if special["pad"] is not None:
        writer.add_pad_token_id(special["pad"])
    if special["unk"] is not None:
        writer.add_unk_token_id(special["unk"])
    probe = tokenizer.encode("a")
    writer.add_add_bos_token(special["bos"] is not None and bool(probe) and probe[0] == special["bos"])
    writer.add_add_eos_token(special["eos"] is not None and bool(probe) and probe[-1] == special["eos"])
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, str) and template:
        writer.add_chat_template(template)

    name_map = gguf.get_tensor_name_map(arch, n_layers)
    exported: dict[str, Any] = {}
    for name, array in _load_weights(model_dir).items():
        if name == "lm_head.weight" and tie:
            continue  # llama.cpp uses token_embd for a tied head
        gguf_name = name_map.get_name(name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise GGUFExportError(f"{model_dir}: tensor {name} has no GGUF name for {config['model_type']}")
        data = array
        if name.endswith("self_attn.q_proj.weight"):
            data = _permute(data, n_head)
        elif name.endswith("self_attn.k_proj.weight"):
            data = _permute(data, n_kv)
        qtype = _tensor_type(quant, data)
        from gguf import quants

        stored = quants.quantize(np.ascontiguousarray(data, dtype=np.float32), qtype)
        writer.add_tensor(gguf_name, stored, raw_dtype=qtype)
        exported[name] = qtype
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return exported


def _probe_rows(tokenizer: Any) -> list[list[int]]:
    rows = [list(tokenizer.encode(PROBE_TEXT, add_special_tokens=False))]
    if getattr(tokenizer, "chat_template", None):
        rows.append(list(tokenizer.apply_chat_template(list(PROBE_CONVERSATION), add_generation_prompt=True,
                                                       tokenize=True, return_dict=False)))
    return [r[:96] for r in rows if r]


def _logprobs(model: Any, rows: Sequence[Sequence[int]]) -> list[Any]:
    import torch

    out = []
    with torch.no_grad():
        for r in rows:
            ids = torch.tensor([list(r)], dtype=torch.long)
            logits = model(input_ids=ids, use_cache=False).logits[0].float()
            out.append(torch.log_softmax(logits, dim=-1))
    return out


def verify_weights(model_dir: str | Path, gguf_path: str | Path, types: Mapping[str, Any]) -> tuple[float, float]:
    """(max diff to the rounded merged model, max diff to the fp32 merged model); raises on a mismatch."""
    import torch
    from transformers import AutoModelForCausalLM

    model_dir, gguf_path = Path(model_dir), Path(gguf_path)
    tokenizer = _hf_tokenizer(model_dir)
    rows = _probe_rows(tokenizer)
    try:
        loaded: Any = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name,
                                                      dtype=torch.float32, local_files_only=True)
    except Exception as exc:  # the reader's own error, re-raised with the file named
        raise GGUFExportError(f"{gguf_path}: transformers' GGUF loader cannot read the file: {exc}") from exc
    loaded.eval()
    got = _logprobs(loaded, rows)
    del loaded
    reference: Any = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32, local_files_only=True)
    reference.eval()
    fp32 = _logprobs(reference, rows)
    params = dict(reference.named_parameters())
    with torch.no_grad():
        for name, qtype in types.items():
            p = params.get(name)
            if p is None:
                raise GGUFExportError(f"{model_dir}: exported tensor {name} is not a parameter of the model")
            p.copy_(torch.from_numpy(round_to(p.detach().numpy(), qtype)))
    rounded = _logprobs(reference, rows)
    to_rounded = max(float((a - b).abs().max()) for a, b in zip(got, rounded))
    to_fp32 = max(float((a - b).abs().max()) for a, b in zip(got, fp32))
    if not to_rounded <= LOGPROB_TOLERANCE:  # also catches NaN
        raise GGUFExportError(
            f"{gguf_path}: read back by transformers, the file's next-token log-probs differ from the merged model "
            f"rounded to the declared tensor types by {to_rounded:.3g} (tolerance {LOGPROB_TOLERANCE:g}); "
            "the exported weights are wrong")
    return to_rounded, to_fp32


def verify_chat_template(model_dir: str | Path, gguf_path: str | Path) -> None:
    """The chat template and special ids read back from the GGUF (by transformers) equal the training ones."""
    from transformers import AutoTokenizer

    model_dir, gguf_path = Path(model_dir), Path(gguf_path)
    trained = _hf_tokenizer(model_dir)
    try:
        served = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name, local_files_only=True)
    except Exception as exc:
        raise GGUFExportError(f"{gguf_path}: transformers cannot read the file's tokenizer: {exc}") from exc
    for key, want in special_token_ids(trained).items():
        if key == "unk":
            continue
        got = special_token_ids(served)[key]
        if want is not None and got != want:
            raise GGUFExportError(f"{gguf_path}: {key} token id is {got} in the file but {want} in training")
    template = getattr(trained, "chat_template", None)
    if not template:
        return
    if getattr(served, "chat_template", None) != template:
        raise GGUFExportError(f"{gguf_path}: the file's chat template differs from the training template")
    for gen in (False, True):
        want_text = trained.apply_chat_template(list(PROBE_CONVERSATION), tokenize=False, add_generation_prompt=gen)
        got_text = served.apply_chat_template(list(PROBE_CONVERSATION), tokenize=False, add_generation_prompt=gen)
        if want_text != got_text:
            raise GGUFExportError(
                f"{gguf_path}: the chat template rendered from the file's metadata differs from the training "
                f"template on a multi-turn conversation:\n  training: {want_text!r}\n  gguf:     {got_text!r}")


def stop_strings(model_dir: str | Path) -> list[str]:
    """The stop texts a server must honour: the EOS token (and pad when it differs), as training ends answers."""
    tokenizer = _hf_tokenizer(Path(model_dir))
    out = [t for t in (tokenizer.eos_token,) if t]
    return out


def ollama_modelfile(gguf_path: str | Path, model_dir: str | Path) -> str:
    """An Ollama Modelfile for the exported file: FROM, the chat template as Go template, the stop tokens.

    Ollama templates are Go templates, not Jinja; we translate ChatML-shaped templates (the one SmolLM2 and
    the tiny test models use), recognised by rendering them, and refuse others.
    """
    tokenizer = _hf_tokenizer(Path(model_dir))
    template = getattr(tokenizer, "chat_template", None)
    if not template:
        raise GGUFExportError(f"{model_dir}: no chat template; an Ollama Modelfile needs one")
    convo = [{"role": "user", "content": "U"}, {"role": "assistant", "content": "A"}]
    rendered = tokenizer.apply_chat_template(convo, tokenize=False)
    chatml = "<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\nA<|im_end|>\n"
    if not rendered.endswith(chatml):
        raise GGUFExportError(f"{model_dir}: the chat template is not ChatML; --ollama only translates ChatML "
                              "templates (use the GGUF's own template with llama.cpp)")
    system_default = ""
    prefix = rendered[: -len(chatml)]
    if prefix:
        start, end = "<|im_start|>system\n", "<|im_end|>\n"
        if not (prefix.startswith(start) and prefix.endswith(end)):
            raise GGUFExportError(f"{model_dir}: unrecognised text before the first turn: {prefix!r}")
        system_default = prefix[len(start): -len(end)]
    # Ollama puts the Modelfile's SYSTEM into .Messages as the first message when a chat has none.
    go_template = (
        "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}"
        "<|im_start|>assistant\n"
    )
    lines = [f"FROM {Path(gguf_path).resolve()}", f'TEMPLATE """{go_template}"""']
    if system_default:
        lines.append(f'SYSTEM """{system_default}"""')
    lines += [f"PARAMETER stop {json.dumps(s)}" for s in stop_strings(model_dir)]
    lines.append('PARAMETER stop "<|im_start|>"')
    return "\n".join(lines) + "\n"


def export_gguf(model_dir: str | Path, out: str | Path, quant: str = "f16", *,
                ollama: bool = False) -> GGUFExportReport:
    """Write, verify and move into place ``out`` (and ``<out dir>/Modelfile`` with ``ollama``)."""
    model_dir, out = Path(model_dir), Path(out)
    quant = check_quant(quant)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".gguf", dir=out.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 is for the temp file, not for the result
    try:
        types = write_gguf(model_dir, tmp, quant)
        to_rounded, to_fp32 = verify_weights(model_dir, tmp, types)
        verify_chat_template(model_dir, tmp)
        modelfile_text = ollama_modelfile(out, model_dir) if ollama else None
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, out)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    modelfile = atomic_write_text(out.parent / "Modelfile", modelfile_text) if modelfile_text else None
    counts: dict[str, int] = {}
    for qtype in types.values():
        counts[qtype.name] = counts.get(qtype.name, 0) + 1
    tokenizer = _hf_tokenizer(model_dir)
    return GGUFExportReport(path=out, quant=quant, tensor_types=counts, max_diff_to_rounded=to_rounded,
                            max_diff_to_fp32=to_fp32, special_tokens=special_token_ids(tokenizer),
                            chat_template=getattr(tokenizer, "chat_template", None), modelfile=modelfile)


def export_model(model: Any, out: str | Path, quant: str = "f16", *, ollama: bool = False) -> GGUFExportReport:
    """``Model.export_gguf`` for every backend: the verified merged directory (``save_pretrained``), then export.

    The merged directory lives in a temporary directory next to ``out`` and is removed afterwards.
    """
    quant = check_quant(quant)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.merged-", dir=out.parent) as tmp:
        merged = model.save_pretrained(Path(tmp) / "merged")
        return export_gguf(merged, out, quant, ollama=ollama)
