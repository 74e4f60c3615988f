"""TRL's fused LM head, scoring only the positions that have a label, on every device.

TRL patches the model's forward with a fused LM head (``trl.kernels.ChunkedLogProbFunction``): the
per-token log-probabilities are computed in vocabulary tiles without building the full logits. With its
Triton kernels (CUDA/XPU) it scores only the positions whose next-token label is not ``-100``; on every
other device (CPU, MPS) it scores *every* position of the padded batch and zeroes the unwanted ones
afterwards, because there a changing number of rows would recompile tiles on some accelerators. On a
small model the LM head is a large share of a token's compute (SmolLM2-135M: vocabulary 49152 x
hidden 576, about a fifth of the forward and backward), and in SFT with completion-only loss or in
DPO the prompt and the padding carry no label — often half of the positions.

:func:`install` re-patches a model TRL has patched: the same backbone call, the same
``ChunkedLogProbFunction`` with the same settings (read from TRL's own patched forward through
:mod:`._compat.trl`, so temperature, logit soft-capping and scaling, the extra metric outputs are
TRL's), fed only the labelled rows, the results scattered back into the padded layout TRL expects.
The values are TRL's; only rows whose result TRL would discard are not computed. Anything this does
not cover (pre-shifted labels, MoE router losses, sharded heads, a TRL whose patched forward looks
different) goes to TRL's forward, and a numerical probe against TRL's forward decides per model
whether the compact one is used.
"""

from __future__ import annotations

import math
import types
from typing import Any

import torch

from . import shared_prefix
from ._compat import trl as trl_compat

_MARK = "_mindprint_compact_head"
_TRL_FORWARD = "_mindprint_trl_forward"


def _compact_forward(trl_forward: Any, settings: dict[str, Any], head: trl_compat.FusedHead) -> Any:
    text_config = settings["text_config"]
    outputs = settings["outputs"]

    def forward(self: Any, *args: Any, fused_lm_head: bool = False, labels: Any = None, shift_labels: Any = None,
                num_items_in_batch: Any = None, **kwargs: Any) -> Any:
        plain = (not fused_lm_head or labels is None or shift_labels is not None or settings["cast_lm_head_to_fp32"]
                 or kwargs.get("output_router_logits") or getattr(text_config, "output_router_logits", False))
        if plain:
            return trl_forward(*args, fused_lm_head=fused_lm_head, labels=labels, shift_labels=shift_labels,
                               num_items_in_batch=num_items_in_batch, **kwargs)
        kwargs["use_cache"] = False
        backbone = getattr(self, settings["backbone_attr"])
        hidden = None
        if not args and getattr(self, shared_prefix.ATTR, False):
            hidden = shared_prefix.hidden_states(backbone, kwargs)
        if hidden is None:
            hidden = backbone(*args, **kwargs).last_hidden_state
        lm_head = self.get_output_embeddings()
        hidden_states = hidden[:, :-1].to(lm_head.weight.device)
        shifted = labels[:, 1:].to(lm_head.weight.device)
        mask = shifted != -100
        weight, bias = lm_head.weight, lm_head.bias
        with head.gather_context(weight, bias):
            per_token = head.function.apply(
                hidden_states[mask], weight, bias, shifted[mask], settings["temperature"], head.chunk_size,
                settings["final_logit_softcapping"], settings["logit_scale"], outputs)
        # masked_scatter keeps an all-masked micro-batch connected to the graph (a differentiable zero), as TRL does
        log_probs, entropy, log_sum_sq_probs, mean_logits, is_top1 = (
            None if x is None else x.new_zeros(mask.shape).masked_scatter(mask, x) for x in per_token)
        assert log_probs is not None  # always computed by ChunkedLogProbFunction
        count = mask.sum().clamp(min=1) if num_items_in_batch is None else num_items_in_batch
        return head.output(loss=-log_probs.sum() / count, log_probs=log_probs, entropy=entropy,
                           log_sum_sq_probs=log_sum_sq_probs, mean_logits=mean_logits, is_top1=is_top1,
                           label_mask=mask, aux_loss=None)

    return forward


def install(model: Any) -> bool:
    """Use the compact head on ``model`` (the transformers model TRL patched, under any PEFT wrapper).
    Returns whether it is in use; False leaves TRL's forward as it was."""
    trl_forward = model.__dict__.get("forward")
    if trl_forward is not None and trl_forward is model.__dict__.get(_MARK):
        return True  # already ours (a second call for the same trainer)
    settings = trl_compat.fused_forward_settings(trl_forward)
    head = trl_compat.fused_head()
    if settings is None or head is None:  # not TRL's fused forward of the tested shape: keep it
        return False
    weight = getattr(model.get_output_embeddings(), "weight", None)
    if weight is None or type(weight).__name__ == "DTensor":
        return False
    compact = types.MethodType(_compact_forward(trl_forward, settings, head), model)
    if not _agrees(model, trl_forward, compact, settings):
        return False
    model.forward = compact
    setattr(model, _MARK, compact)
    setattr(model, _TRL_FORWARD, (trl_forward, settings))
    return True


def share_prompts(model: Any) -> bool:
    """DPO: let the compact head run each pair's prompt once (:mod:`.shared_prefix`) if the probe agrees.
    Needs :func:`install` to have succeeded on ``model``."""
    compact = model.__dict__.get("forward")
    if compact is None or compact is not model.__dict__.get(_MARK):
        return False
    if getattr(model, shared_prefix.ATTR, False):
        return True
    trl_forward, settings = getattr(model, _TRL_FORWARD)
    setattr(model, shared_prefix.ATTR, True)
    try:
        agrees = _agrees(model, trl_forward, compact, settings)
    except (TypeError, ValueError, AttributeError):  # layers that do not take a plain per-layer cache
        agrees = False
    if not agrees:
        setattr(model, shared_prefix.ATTR, False)
    return agrees


def _agrees(model: Any, trl_forward: Any, compact: Any, settings: dict[str, Any]) -> bool:
    """Both forwards on a small DPO-shaped batch (two pairs sharing their prompts, unlabelled prompts,
    right padding): the same per-token values."""
    ids, attention, labels = _probe_batch(int(model.get_output_embeddings().weight.shape[0]),
                                          model.get_output_embeddings().weight.device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            ref = trl_forward(input_ids=ids, attention_mask=attention, labels=labels, fused_lm_head=True)
            got = compact(input_ids=ids, attention_mask=attention, labels=labels, fused_lm_head=True)
    finally:
        model.train(was_training)
    for name in settings["outputs"]:
        a, b = getattr(ref, name), getattr(got, name)
        if a is None or b is None or a.shape != b.shape:
            return False
        if not torch.allclose(a.float(), b.float(), rtol=1e-4, atol=1e-5):
            return False
    return math.isclose(float(ref.loss), float(got.loss), rel_tol=1e-4, abs_tol=1e-6)


def _probe_batch(vocab: int, device: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    prompts = [torch.randint(0, vocab, (n,), generator=gen) for n in (5, 3)]
    completions = [torch.randint(0, vocab, (n,), generator=gen) for n in (4, 5, 6, 2)]  # chosen 1, 2; rejected 1, 2
    rows = [(prompts[i % 2], completions[i]) for i in (0, 1, 2, 3)]
    length = max(len(p) + len(c) for p, c in rows)
    ids = torch.zeros(len(rows), length, dtype=torch.long)
    attention = torch.zeros_like(ids)
    labels = torch.full_like(ids, -100)
    for r, (prompt, completion) in enumerate(rows):
        n = len(prompt) + len(completion)
        ids[r, :n] = torch.cat([prompt, completion])
        attention[r, :n] = 1
        labels[r, len(prompt):n] = completion
    return ids.to(device), attention.to(device), labels.to(device)


class CompactHeadMixin:
    """Mixed into the TRL trainer subclasses: after TRL patched its heads, switch them to the compact one
    (and, for DPO, to shared prompts). ``compact_head`` / ``shared_prompts`` tell what the policy uses
    (False: TRL's own forward, e.g. the probe disagreed)."""

    compact_head: bool = False
    shared_prompts: bool = False
    pair_batches: bool = False  # DPO: rows i and B + i of a batch share their prompt

    def use_compact_heads(self) -> None:
        from peft import PeftModel

        model: Any = self.model  # type: ignore[attr-defined]
        ref = getattr(self, "ref_model", None)
        for target in (model.get_base_model() if isinstance(model, PeftModel) else model, ref):
            if target is None or not install(target):
                continue
            # The shared-prompt forward runs the layers with a KV cache, which gradient checkpointing's
            # recomputation does not support: with checkpointing on, pairs run as TRL batches them.
            pairs = self.pair_batches and not getattr(getattr(self, "args", None), "gradient_checkpointing", False)
            if not pairs:  # the model may come from a DPO run: its SFT batches are not pairs
                setattr(target, shared_prefix.ATTR, False)
            shared = pairs and share_prompts(target)
            if target is not ref:
                self.compact_head, self.shared_prompts = True, shared
