"""The :class:`TrainerConfig` a parsed command line asks for: ``--config``/``--set``/``--backend``... on top of the
bundled defaults. Its own module because every command (and ``--nproc``'s relaunch) starts from it."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from mindprint_interfaces import GenerationConfig

from .config import TrainerConfig, load_config

SEEDED_SECTIONS = ("sft", "dpo", "orpo", "cpo", "kto")


def _extra(args: argparse.Namespace) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    model: dict[str, Any] = {}
    if getattr(args, "model", None):
        model["path"] = args.model
    if getattr(args, "adapter", None):
        model["adapter"] = args.adapter
    if getattr(args, "quantize", None):
        model["quantization"] = {"bits": args.quantize}
    if model:
        extra["model"] = model
    if getattr(args, "output_dir", None):
        extra["output_dir"] = args.output_dir
    if getattr(args, "data_dir", None):
        extra["data"] = {"dir": args.data_dir}
    if getattr(args, "seed", None) is not None:  # --seed: one seed for the backend and every training section
        extra["backend"] = {"seed": args.seed}
        extra.update({section: {"seed": args.seed} for section in SEEDED_SECTIONS})
    if getattr(args, "report_to", None):  # --report-to tensorboard,mlflow (repeatable; "none" = off)
        extra["report_to"] = [n for item in args.report_to for n in item.split(",") if n.strip()]
    return extra


def config_from_args(args: argparse.Namespace, extra: Mapping[str, Any] | None = None) -> TrainerConfig:
    merged = {**_extra(args), **(extra or {})}
    return load_config(getattr(args, "config", None), backend=getattr(args, "backend", None),
                       device=getattr(args, "device", None), dtype=getattr(args, "dtype", None),
                       sets=getattr(args, "set", None) or (), extra=merged)


def generation_from_args(cfg: TrainerConfig, args: argparse.Namespace) -> GenerationConfig:
    """The config's generation settings with ``--max-new-tokens`` / ``--temperature`` applied (generate, chat)."""
    overrides: dict[str, Any] = {}
    if getattr(args, "max_new_tokens", None) is not None:
        overrides["max_new_tokens"] = args.max_new_tokens
    if getattr(args, "temperature", None) is not None:
        overrides["temperature"] = args.temperature
    return cfg.generation_config(**overrides)
