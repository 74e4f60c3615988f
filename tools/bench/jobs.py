"""The job list and the comparisons built from it.

Each job is one (backend, task, implementation, configuration); each comparison pairs a
mindprint job with the peer job a user would otherwise run, with the issue's target ratio.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class JobDef:
    name: str
    backend: str
    task: str
    side: str
    variant: str
    label: str
    requires: tuple[str, ...]
    batch_factor: int = 1  # x the base batch size (the 2B-sequence SFT runs for the memory comparison)
    options: dict[str, Any] = field(default_factory=dict)
    full_only: bool = False  # skipped in a plain --smoke run (slow, or tested on its own: tests/bench/test_sftmix.py)


# The realistic length mix (#19): data.sft_mix_records() at max length 1024. A packed step is the bench's batch
# size in packed rows (<= 1024 tokens each); an unpacked peer gets the number of sequences that carries the same
# real tokens on average (``match_packed_rows``: batch x sequences per packed row, computed in the job from the
# tokenized set, recorded in its notes). full_only: the plain smoke test skips them; tests/bench/test_sftmix.py runs
# them on their own.
SFT_MIX: dict[str, Any] = {"data": "sft_mix", "max_length": 1024}
_PACKED = {**SFT_MIX, "packing": True}
_MATCHED = {**SFT_MIX, "match_packed_rows": True}

JOBS: tuple[JobDef, ...] = (
    JobDef("torch-sft-mindprint", "torch", "sft", "mindprint", "mindprint", "mindprint (torch)", ("mindprint_torch",)),
    JobDef("torch-sft-trl", "torch", "sft", "peer", "trl", "TRL SFTTrainer", ("trl", "peft")),
    JobDef("torch-sft2b-mindprint", "torch", "sft", "mindprint", "mindprint", "mindprint (torch), 2B sequences",
           ("mindprint_torch",), batch_factor=2),
    JobDef("torch-dpo-mindprint", "torch", "dpo", "mindprint", "mindprint", "mindprint (torch)", ("mindprint_torch",)),
    JobDef("torch-dpo-mindprint-onthefly", "torch", "dpo", "mindprint", "mindprint_onthefly",
           "mindprint (torch), precompute_ref_log_probs=False", ("mindprint_torch",),
           options={"precompute_ref_log_probs": False}),
    JobDef("torch-dpo-trl", "torch", "dpo", "peer", "trl", "TRL DPOTrainer (defaults)", ("trl", "peft")),
    JobDef("torch-dpo-trl-precompute", "torch", "dpo", "peer", "trl_precompute",
           "TRL DPOTrainer, precompute_ref_log_probs=True", ("trl", "peft"), options={"precompute_ref_log_probs": True}),
    JobDef("mlx-sft-mindprint", "mlx", "sft", "mindprint", "mindprint", "mindprint (mlx)", ("mindprint_mlx", "mlx_lm")),
    JobDef("mlx-sft-mlx_lm", "mlx", "sft", "peer", "mlx_lm_openblas", "mlx-lm tuner (same OpenBLAS)", ("mlx_lm",),
           options={"blas": "openblas"}),
    JobDef("mlx-sft-mlx_lm-refblas", "mlx", "sft", "peer", "mlx_lm", "mlx-lm tuner (as installed: reference BLAS)",
           ("mlx_lm",), full_only=True),
    JobDef("mlx-sft2b-mindprint", "mlx", "sft", "mindprint", "mindprint", "mindprint (mlx), 2B sequences",
           ("mindprint_mlx", "mlx_lm"), batch_factor=2),
    JobDef("mlx-dpo-mindprint", "mlx", "dpo", "mindprint", "mindprint", "mindprint (mlx)", ("mindprint_mlx", "mlx_lm")),
    JobDef("mlx-dpo-mlx_lm_lora", "mlx", "dpo", "peer", "mlx_lm_lora_openblas", "mlx-lm-lora DPO (same OpenBLAS)",
           ("mlx_lm_lora",), options={"blas": "openblas"}),
    JobDef("mlx-dpo-mlx_lm_lora-sameorder", "mlx", "dpo", "peer", "mlx_lm_lora_openblas_sameorder",
           "mlx-lm-lora DPO, pairs in mindprint's order (same-maths check)", ("mlx_lm_lora",),
           options={"blas": "openblas", "order": "mindprint"}),
    *(JobDef(f"{b}-sft-mindprint-{tag}", b, "sft", "mindprint", "mindprint", f"mindprint ({b}), {label}",
             ("mindprint_torch",) if b == "torch" else ("mindprint_mlx", "mlx_lm"), options=options, full_only=True)
      for b in ("torch", "mlx") for tag, label, options in (
          ("bf16", "bf16 base", {"dtype": "bfloat16"}),
          ("q4", "4-bit base (QLoRA)", {"quantization": {"bits": 4}}),
          ("gc", "gradient checkpointing", {"gradient_checkpointing": True}))),
    JobDef("mlx-dpo-mlx_lm_lora-refblas", "mlx", "dpo", "peer", "mlx_lm_lora",
           "mlx-lm-lora DPO (as installed: reference BLAS)", ("mlx_lm_lora",), full_only=True),
    # The other preference methods (#22), on the DPO rows' settings. KTO trains on the pairs unpaired (each pair
    # gives a desirable and an undesirable record, as TRL unpairs them), 2x the records per step = the same
    # sequences per step as a DPO step.
    JobDef("torch-orpo-mindprint", "torch", "orpo", "mindprint", "mindprint", "mindprint (torch)", ("mindprint_torch",)),
    JobDef("torch-orpo-trl", "torch", "orpo", "peer", "trl", "TRL ORPOTrainer (trl.experimental)", ("trl", "peft")),
    JobDef("torch-kto-mindprint", "torch", "kto", "mindprint", "mindprint", "mindprint (torch)", ("mindprint_torch",),
           batch_factor=2),
    JobDef("torch-kto-trl", "torch", "kto", "peer", "trl", "TRL KTOTrainer", ("trl", "peft"), batch_factor=2),
    JobDef("mlx-orpo-mindprint", "mlx", "orpo", "mindprint", "mindprint", "mindprint (mlx)",
           ("mindprint_mlx", "mlx_lm")),
    JobDef("mlx-orpo-mlx_lm_lora", "mlx", "orpo", "peer", "mlx_lm_lora_openblas", "mlx-lm-lora ORPO (same OpenBLAS)",
           ("mlx_lm_lora",), options={"blas": "openblas"}),
    JobDef("torch-sftmix-mindprint", "torch", "sft", "mindprint", "mindprint_packed",
           "mindprint (torch), packing=True (B rows of <= 1024 tokens)", ("mindprint_torch",), options=_PACKED, full_only=True),
    JobDef("torch-sftmix-trl-packed", "torch", "sft", "peer", "trl_packed",
           "TRL SFTTrainer, packing=True (bfd; B rows of <= 1024 tokens)", ("trl", "peft"), options=_PACKED,
           full_only=True),
    JobDef("torch-sftmix-trl-paddingfree", "torch", "sft", "peer", "trl_paddingfree",
           "TRL SFTTrainer, padding_free=True, unpacked (sequences matched to B packed rows' tokens)",
           ("trl", "peft"), options={**_MATCHED, "padding_free": True}, full_only=True),
    JobDef("mlx-sftmix-mindprint", "mlx", "sft", "mindprint", "mindprint_packed",
           "mindprint (mlx), packing=True (B rows of <= 1024 tokens)", ("mindprint_mlx", "mlx_lm"), options=_PACKED,
           full_only=True),
    JobDef("mlx-sftmix-mlx_lm", "mlx", "sft", "peer", "mlx_lm_openblas",
           "mlx-lm tuner (same OpenBLAS), unpacked (sequences matched to B packed rows' tokens)", ("mlx_lm",),
           options={**_MATCHED, "blas": "openblas"}, full_only=True),
)


@dataclass(frozen=True)
class Comparison:
    key: str
    title: str
    mindprint: str
    peer: str
    target: float | None  # peer time / mindprint time must be >= target
    per_token: bool = False  # judged on tokens/s (mindprint / peer): the two sides' steps carry different tokens


COMPARISONS: tuple[Comparison, ...] = (
    Comparison("torch_sft", "torch SFT", "torch-sft-mindprint", "torch-sft-trl", 1.0),
    Comparison("torch_dpo_defaults", "torch DPO vs TRL defaults", "torch-dpo-mindprint", "torch-dpo-trl", 1.3),
    Comparison("torch_dpo_vs_precompute", "torch DPO vs TRL precompute", "torch-dpo-mindprint",
               "torch-dpo-trl-precompute", 1.0),
    Comparison("torch_dpo_onthefly_both", "torch DPO, both on the fly", "torch-dpo-mindprint-onthefly",
               "torch-dpo-trl", None),
    Comparison("mlx_sft", "MLX SFT", "mlx-sft-mindprint", "mlx-sft-mlx_lm", 1.0),
    Comparison("mlx_sft_refblas", "MLX SFT vs mlx-lm as installed", "mlx-sft-mindprint", "mlx-sft-mlx_lm-refblas", None),
    Comparison("mlx_dpo", "MLX DPO", "mlx-dpo-mindprint", "mlx-dpo-mlx_lm_lora", 2.0),
    Comparison("mlx_dpo_sameorder", "MLX DPO, peer in mindprint's batch order", "mlx-dpo-mindprint",
               "mlx-dpo-mlx_lm_lora-sameorder", None),
    Comparison("mlx_dpo_refblas", "MLX DPO vs mlx-lm-lora as installed", "mlx-dpo-mindprint",
               "mlx-dpo-mlx_lm_lora-refblas", None),
    Comparison("torch_orpo", "torch ORPO vs TRL", "torch-orpo-mindprint", "torch-orpo-trl", 1.0),
    Comparison("torch_kto", "torch KTO vs TRL", "torch-kto-mindprint", "torch-kto-trl", 1.0),
    Comparison("mlx_orpo", "MLX ORPO vs mlx-lm-lora", "mlx-orpo-mindprint", "mlx-orpo-mlx_lm_lora", 1.5),
    Comparison("torch_sftmix_packed", "torch SFT length mix, packed vs TRL packed", "torch-sftmix-mindprint",
               "torch-sftmix-trl-packed", 1.3, per_token=True),
    Comparison("torch_sftmix_paddingfree", "torch SFT length mix, packed vs TRL padding-free",
               "torch-sftmix-mindprint", "torch-sftmix-trl-paddingfree", None, per_token=True),
    Comparison("mlx_sftmix", "MLX SFT length mix, packed vs mlx-lm", "mlx-sftmix-mindprint", "mlx-sftmix-mlx_lm",
               2.0, per_token=True),
)

# DPO peak memory must stay <= 1.1x the SFT peak with the same number of sequences per step.
MEMORY_CHECKS: tuple[tuple[str, str, str, float], ...] = (
    ("torch", "torch-dpo-mindprint", "torch-sft2b-mindprint", 1.1),
    ("mlx", "mlx-dpo-mindprint", "mlx-sft2b-mindprint", 1.1),
)


# Memory/precision variants of the fp32 SFT job (mindprint only: the question is what each setting costs and saves).
VARIANTS: tuple[tuple[str, str], ...] = tuple(
    (f"{b}-sft-mindprint", f"{b}-sft-mindprint-{tag}") for b in ("torch", "mlx") for tag in ("bf16", "q4", "gc"))


def missing_requirement(job: JobDef) -> str | None:
    """Why a job cannot run here (a module not installed / a backend not registered), or None."""
    if "quantization" in job.options and job.backend == "torch" and importlib.util.find_spec("bitsandbytes") is None:
        return "bitsandbytes is not installed (the mindprint-torch[quantization] extra)"
    for module in job.requires:
        if importlib.util.find_spec(module) is None:
            hint = " (uv run --group bench ...)" if module == "mlx_lm_lora" else ""
            return f"{module} is not installed{hint}"
    if job.side == "mindprint":
        from mindprint_interfaces import BackendRegistry

        name = "pytorch" if job.backend == "torch" else "mlx"
        if name not in BackendRegistry.available():
            return f"mindprint backend {name!r} is not registered"
    return None
