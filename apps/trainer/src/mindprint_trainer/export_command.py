"""``mindprint export SRC OUT.gguf --quant q8_0 [--ollama]``: a verified GGUF file for llama.cpp / Ollama.

SRC is a merged HF model directory (exported as is), a model directory with ``--adapter`` (merged on the
chosen backend, verified, then exported), or a run directory of ``mindprint sft``/``dpo`` (its
``config.yaml`` names the model; the adapter is ``adapters/dpo`` or ``adapters/sft``, or ``--adapter``).
Every export is checked by readers we did not write (:mod:`mindprint_kit.gguf_export`); a failed check
leaves nothing at OUT.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mindprint_interfaces import ConfigError

from .args_config import config_from_args
from .backend_setup import load_model, make_backend
from .run_output import console

RUN_ADAPTERS = ("dpo", "sft")  # the last stage a single-stage run trains wins


def _source(args: argparse.Namespace) -> tuple[Path | None, dict[str, Any]]:
    """(merged directory to export directly, or None) and the config overrides for loading a model."""
    src = Path(args.src)
    if not src.exists():
        raise ConfigError(f"{src}: no such file or directory", key="src")
    if (src / "config.yaml").is_file() and not (src / "config.json").is_file():  # a run directory
        adapter = args.adapter
        if adapter is None:
            found = [src / "adapters" / s for s in RUN_ADAPTERS if (src / "adapters" / s).is_dir()]
            if not found:
                raise ConfigError(f"{src}: a run directory without adapters/dpo or adapters/sft; pass --adapter DIR",
                                  key="adapter")
            adapter = str(found[0])
        return None, {"config": str(src / "config.yaml"), "adapter": adapter}
    if not (src / "config.json").is_file():
        raise ConfigError(f"{src}: neither a model directory (config.json) nor a run directory (config.yaml)",
                          key="src")
    if args.adapter is None and not (src / "adapter_config.json").is_file():
        return src, {}
    return None, {"model": str(src), "adapter": args.adapter}


def cmd_export(args: argparse.Namespace) -> int:
    from mindprint_kit.gguf_export import check_quant, export_gguf

    quant = check_quant(args.quant)
    merged, load = _source(args)
    if merged is not None:
        with console.status(f"exporting {merged} to {args.out} ({quant}, verified)"):
            report = export_gguf(merged, args.out, quant, ollama=args.ollama)
    else:
        if load.get("config") and not getattr(args, "config", None):
            args.config = load["config"]
        if load.get("model"):
            args.model = load["model"]
        args.adapter = load.get("adapter")
        cfg = config_from_args(args)
        backend = make_backend(cfg)
        model = load_model(backend, cfg)
        with console.status(f"merging {cfg.model.adapter} into {cfg.model.path} and exporting ({quant}, verified)"):
            report = model.export_gguf(args.out, quant, ollama=args.ollama)
    types = ", ".join(f"{n} {name}" for name, n in sorted(report.tensor_types.items()))
    console.print(f"GGUF written to {report.path} ({types})")
    console.print(f"  read back by transformers: max |d log p| {report.max_diff_to_rounded:.2g} to the merged model "
                  f"rounded to the file's types, {report.max_diff_to_fp32:.3g} to the fp32 merged model")
    console.print("  chat template and special token ids match training")
    if report.modelfile is not None:
        console.print(f"  Ollama Modelfile: {report.modelfile} (ollama create NAME -f {report.modelfile})")
    return 0
