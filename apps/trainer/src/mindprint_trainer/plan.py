"""``mindprint plan``: will this run fit? Peak memory predicted from the configuration alone
(:mod:`mindprint_interfaces.memory_plan`), whether it fits this host (or ``--memory``), and what to change."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from mindprint_interfaces import ConfigError
from mindprint_interfaces.memory_plan import (
    KNOWN_SHAPES,
    ModelShape,
    PlanRequest,
    human,
    parse_memory,
    predict,
    suggestions,
)


def add_parser(sub: Any) -> None:
    p = sub.add_parser("plan", help="predict a run's peak memory from its configuration; does it fit?")
    p.add_argument("--model", required=True, metavar="DIR|ID", help=f"a model directory or one of: "
                                                                     f"{', '.join(KNOWN_SHAPES)}")
    p.add_argument("--max-length", type=int, default=2048)
    p.add_argument("--batch", type=int, default=4, help="per-device batch size")
    p.add_argument("--method", choices=("sft", "dpo"), default="sft")
    p.add_argument("--quantize", type=int, choices=(4, 8), help="a quantized (QLoRA) base")
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument("-b", "--backend", choices=("mlx", "pytorch"), default="mlx")
    p.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="bfloat16")
    p.add_argument("--lora-r", type=int, default=8)
    p.add_argument("--memory", help="memory to plan for, e.g. 64GB (default: this host's)")


def model_shape(model: str) -> ModelShape:
    if model in KNOWN_SHAPES:
        return ModelShape.from_config(KNOWN_SHAPES[model])
    path = Path(model).expanduser()
    if not (path / "config.json").is_file():
        raise ConfigError(f"--model: {model} is neither a model directory with config.json nor one of "
                          f"{', '.join(KNOWN_SHAPES)}", key="model")
    return ModelShape.from_directory(path)


def host_memory() -> float:
    return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def run(args: argparse.Namespace) -> int:
    shape = model_shape(args.model)
    req = PlanRequest(max_length=args.max_length, batch=args.batch, method=args.method, dtype=args.dtype,
                      quantize_bits=args.quantize, gradient_checkpointing=args.gradient_checkpointing,
                      backend=args.backend, lora_r=args.lora_r)
    plan = predict(shape, req)
    budget = parse_memory(args.memory) if args.memory else host_memory()
    print(f"{args.model}: {shape.params / 1e9:.2f}B parameters; {args.method}, batch {args.batch}, "
          f"max length {args.max_length}, {args.dtype}" + (f", {args.quantize}-bit base" if args.quantize else "")
          + (", gradient checkpointing" if args.gradient_checkpointing else "") + f" on {args.backend}")
    for name, value in plan.table():
        print(f"  {name:<40} {value:>12}")
    fits = plan.peak <= budget
    print(f"{'fits' if fits else 'does NOT fit'} in {human(budget)}")
    if not fits:
        print("to make it fit, change one of (predicted peak):")
        for line in suggestions(shape, req, budget):
            print(f"  {line}")
    return 0 if fits else 1
