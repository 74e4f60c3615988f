"""Verified merge-and-save: the fix for silently corrupted merges (MPS, non-contiguous tensors).

``save_merged`` never touches the live model: it copies it to the CPU in fp32, merges the LoRA
adapter into the copy, makes every tensor contiguous, writes safetensors + tokenizer into a
temporary directory, reloads that directory with plain transformers and compares logits on a
fixed probe batch against the *unmerged* fp32 copy, and checks every written tensor against base +
the adapter's delta computed from the live model (:mod:`mindprint_kit.merge_check`). Only when the merged model and the reloaded
one both agree (within ``tolerance``) is the directory moved into place; otherwise
:class:`MergeVerificationError` is raised and nothing is written at ``path``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import torch

from mindprint_interfaces import HFTokenizer, MergeVerificationError
from mindprint_interfaces.data import Message, render_prompt
from mindprint_interfaces.fileio import atomic_directory
from mindprint_interfaces.protocols import PathLike
from mindprint_kit.merge_check import check_written_tensors

from .quantization import dequantized_state, full_precision_copy, is_quantized


class MergeSource(Protocol):
    """What a merge reads from a torch model (PyTorchModel has it; no import of it here)."""

    hf_model: Any
    hf_tokenizer: Any

    @property
    def tokenizer(self) -> HFTokenizer: ...
    @property
    def pad_id(self) -> int: ...
    def has_adapter(self) -> bool: ...

PROBE_TEXTS = (
    "The capital of France is Paris. The quick brown fox jumps over the lazy dog.",
    "Merge check 0123456789: answer briefly and kindly.",
)
# fp32 merge reorders float operations (x(W + sBA) vs xW + s(xA)B): differences are ~1e-6 relative.
RELATIVE_TOLERANCE = 1e-5
ABSOLUTE_TOLERANCE = 1e-4
# bitsandbytes' kernels vs a plain matmul on the dequantized weights (relative to the logit scale).
QUANTIZED_TOLERANCE = 1e-3


def probe_batch(model: MergeSource) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed, right-padded batch of token ids (plain text and a chat-formatted prompt)."""
    tok = model.tokenizer
    rows = [tok.encode(t) for t in PROBE_TEXTS]
    rows.append(render_prompt(tok, [Message(role="user", content="What is the capital of France?")]))
    rows = [r[:64] for r in rows if r]
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), model.pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    return ids, mask


def _logits(module: Any, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    module.eval()
    with torch.no_grad():
        out: torch.Tensor = module(input_ids=ids, attention_mask=mask, use_cache=False).logits.float()
    return out * mask.unsqueeze(-1)  # padded positions do not count


def tolerance_for(reference: torch.Tensor) -> float:
    return ABSOLUTE_TOLERANCE + RELATIVE_TOLERANCE * float(reference.abs().max())


def _compare(reference: torch.Tensor, other: torch.Tensor, what: str) -> None:
    diff = float((reference - other).abs().max())
    tol = tolerance_for(reference)
    if not diff <= tol:  # also catches NaN
        raise MergeVerificationError(
            f"{what}: logits differ from the unmerged model by {diff:.3g} (tolerance {tol:.3g}); "
            "the merged weights are wrong, nothing was saved", max_abs_diff=diff, tolerance=tol)


def merged_cpu_copy(model: MergeSource) -> tuple[Any, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(merged fp32 CPU model, probe ids, probe mask, reference logits of the unmerged fp32 copy)."""
    work = full_precision_copy(model.hf_model)  # a quantized base: dequantized (the weights it computes with)
    # TRL patches ``forward`` on the instance (fused LM head) with a closure over the *original* module's
    # forward; a deep copy would keep calling the live model. Restore the class forward on the copy.
    for module in work.modules():
        module.__dict__.pop("forward", None)
    ids, mask = probe_batch(model)
    reference = _logits(work, ids, mask)
    if is_quantized(model.hf_model):  # the dequantized copy must compute what the live quantized model does
        live = _logits(model.hf_model, ids.to(model.hf_model.device), mask.to(model.hf_model.device)).cpu()
        diff, tol = float((live - reference).abs().max()), QUANTIZED_TOLERANCE * max(1.0, float(live.abs().max()))
        if not diff <= tol:
            raise MergeVerificationError(f"the dequantized base does not reproduce the quantized model: logits differ "
                                         f"by {diff:.3g} (tolerance {tol:.3g}); nothing was saved",
                                         max_abs_diff=diff, tolerance=tol)
    if model.has_adapter():
        work = work.merge_and_unload(safe_merge=True)
    with torch.no_grad():
        for param in work.parameters():
            param.data = param.data.to(torch.float32).contiguous()
        for buf_name, buf in list(work.named_buffers()):
            if not buf.is_contiguous():
                owner = work.get_submodule(buf_name.rpartition(".")[0]) if "." in buf_name else work
                setattr(owner, buf_name.rpartition(".")[2], buf.contiguous())
    return work, ids, mask, reference


def expected_tensors(model: MergeSource) -> tuple[dict[str, Callable[[], Any]], set[str]]:
    """What each tensor of the merged model must be, from the live model (untouched by the merge): the base
    weight plus ``scaling * B @ A`` for every LoRA site, computed here (not by PEFT); and the names that may
    be absent (a tied LM head)."""
    live = model.hf_model
    state = live.state_dict()  # references, no copy
    lora: dict[str, dict[str, Any]] = {}
    base: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if ".lora_A." in key or ".lora_B." in key:
            prefix, _, rest = key.partition(".lora_")
            kind, adapter = rest.split(".")[0], rest.split(".")[1]
            lora.setdefault(prefix, {})[kind] = value
            lora[prefix]["adapter"] = adapter
            continue
        base[key.removeprefix("base_model.model.").replace(".base_layer.", ".")] = value

    if is_quantized(live):  # the merge starts from the dequantized base: so must the check
        base = dequantized_state(live.get_base_model() if model.has_adapter() else live)

    def plain(value: torch.Tensor) -> Callable[[], Any]:
        return lambda: value.detach().to(device="cpu", dtype=torch.float32).numpy()

    out: dict[str, Callable[[], Any]] = {name: plain(value) for name, value in base.items()}
    for prefix, parts in lora.items():
        layer = live.get_submodule(prefix)
        scale = float(layer.scaling[parts["adapter"]])
        fan_in_fan_out = bool(getattr(layer, "fan_in_fan_out", False))
        name = prefix.removeprefix("base_model.model.") + ".weight"
        weight = base[name]

        def merged(w: torch.Tensor = weight, a: torch.Tensor = parts["A"], b: torch.Tensor = parts["B"],
                   s: float = scale, t: bool = fan_in_fan_out) -> Any:
            with torch.no_grad():
                delta = b.detach().cpu().float() @ a.detach().cpu().float()
                return (w.detach().cpu().float() + s * (delta.T if t else delta)).numpy()

        out[name] = merged
    optional = {"lm_head.weight"} if getattr(live.config, "tie_word_embeddings", False) else set()
    return out, optional


def save_merged(model: MergeSource, path: PathLike, *,
                _after_merge: Callable[[Any], None] | None = None,
                _after_write: Callable[[Path], None] | None = None) -> Path:
    """Merge (on a CPU fp32 copy), save as HF safetensors + tokenizer, reload and verify. Atomic.

    ``_after_merge`` / ``_after_write`` are test hooks that get the merged model / the written
    directory, so a test can corrupt them and prove the check fires.
    """
    from transformers import AutoModelForCausalLM

    merged, ids, mask, reference = merged_cpu_copy(model)
    if _after_merge is not None:
        _after_merge(merged)
    _compare(reference, _logits(merged, ids, mask), "merged model")
    merged.config.dtype = torch.float32
    target = Path(path)
    with atomic_directory(target) as tmp:
        merged.save_pretrained(str(tmp), safe_serialization=True)
        model.hf_tokenizer.save_pretrained(str(tmp))
        del merged
        if _after_write is not None:
            _after_write(tmp)
        expected, optional = expected_tensors(model)
        check_written_tensors(tmp, expected, optional=optional, where=f"merged model ({target})")
        reloaded = AutoModelForCausalLM.from_pretrained(str(tmp), dtype=torch.float32)
        _compare(reference, _logits(reloaded, ids, mask), f"reloaded model ({target})")
        del reloaded
    return target
