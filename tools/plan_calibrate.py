"""Check the memory planner against measured peaks (#17): ``uv run python -m tools.plan_calibrate``.

Random-weight models with the published shapes of Qwen2.5-0.5B and Qwen2.5-1.5B (safetensors in the dtype
trained, the
small test tokenizer: the sequence length, not the vocabulary of the tokenizer, is what costs memory) train
one SFT step per configuration, each in a fresh process, on each backend. The peak is what the backend's
allocator reports where it has one (MLX: ``mx.get_peak_memory()``) and the growth of the process's peak
resident set over its size after the imports otherwise (torch on CPU); the prediction is
``mindprint_interfaces.memory_plan.predict`` for the same request. The table goes to stdout and, with
``--write``, to ``benchmarks/memory_plan.md``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from mindprint_interfaces.memory_plan import KNOWN_SHAPES, ModelShape, PlanRequest, predict

ROOT = Path(__file__).resolve().parent.parent

# The published config.json fields that set the memory, by the short name the table uses.
SHAPES: dict[str, dict[str, Any]] = {name: KNOWN_SHAPES[f"Qwen/{name}-Instruct"] for name in ("Qwen2.5-0.5B", "Qwen2.5-1.5B")}
VARIANTS = {"plain": {}, "checkpointing": {"gradient_checkpointing": True}, "4-bit": {"quantize": 4}}


def build_model(name: str, dtype: str, out: Path) -> Path:
    """A random-weight Qwen2 with ``SHAPES[name]`` in ``dtype`` and the test tokenizer (cached by the marker)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    sys.path.insert(0, str(ROOT / "tools"))
    from tiny_model import build_tokenizer

    marker = out / ".calibration-model.json"
    spec = {"shape": SHAPES[name], "dtype": dtype, "v": 1}
    if marker.is_file() and json.loads(marker.read_text()) == spec:
        return out
    out.mkdir(parents=True, exist_ok=True)
    build_tokenizer(out)
    config = AutoConfig.for_model("qwen2", **SHAPES[name], max_position_embeddings=4096, bos_token_id=None,
                                  eos_token_id=2, pad_token_id=0)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.02)
    model.save_pretrained(str(out), safe_serialization=True)
    marker.write_text(json.dumps(spec))
    return out


def _status_bytes(field: str) -> int:
    """``VmRSS`` / ``VmHWM`` (the peak resident set) of this process, from /proc/self/status."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_rss_peak() -> None:
    with open("/proc/self/clear_refs", "w") as f:  # "5": VmHWM := VmRSS (Linux >= 4.0)
        f.write("5")


def child(backend_name: str, model_dir: str, length: int, variant: str, dtype: str) -> dict[str, Any]:
    """Load, then one SFT step, in this process; returns the load peak and the training peak in bytes.

    The training peak counts the model as loaded plus what the step adds; the load peak is reported apart
    because quantizing on load (or a page-mapped checkpoint) can briefly hold more than training does.
    """
    from mindprint_interfaces import create_backend

    backend = create_backend(backend_name, device="cpu", dtype=dtype, seed=0)
    mx: Any = None
    if backend_name == "mlx":
        import mlx.core as mx

        mx.reset_peak_memory()
    base_rss = _status_bytes("VmRSS")
    _reset_rss_peak()
    opts = VARIANTS[variant]
    quant = {"bits": opts["quantize"]} if "quantize" in opts else None
    model = backend.load_model(model_dir, quantization=quant)
    if mx is not None:
        load_peak = int(mx.get_peak_memory())
        mx.reset_peak_memory()
    else:
        load_peak = _status_bytes("VmHWM") - base_rss
        _reset_rss_peak()
    words = " ".join(f"w{i % 97}" for i in range(length * 2))  # longer than `length` tokens: cut to length
    records = [{"instruction": "Say the words.", "output": words}]
    cfg = {"max_steps": 1, "per_device_batch_size": 1, "max_length": length, "learning_rate": 1e-4,
           "output_dir": str(Path(model_dir).parent / f"out-{backend_name}"),
           "gradient_checkpointing": bool(opts.get("gradient_checkpointing", False))}
    t0 = time.perf_counter()
    result = backend.create_trainer("sft", model, cfg).train(records)
    if not result.success:
        raise SystemExit(f"training failed: {result.error_message}")
    seconds = time.perf_counter() - t0
    peak = int(mx.get_peak_memory()) if mx is not None else _status_bytes("VmHWM") - base_rss
    return {"peak": peak, "load_peak": load_peak, "seconds": seconds}


def predicted(shape: ModelShape, backend: str, length: int, variant: str, dtype: str) -> float:
    opts = VARIANTS[variant]
    req = PlanRequest(max_length=length, batch=1, dtype=dtype, backend=backend,
                      quantize_bits=opts.get("quantize"),
                      gradient_checkpointing=bool(opts.get("gradient_checkpointing", False)))
    return predict(shape, req).total


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--child", nargs=5, metavar=("BACKEND", "MODEL", "LENGTH", "VARIANT", "DTYPE"),
                   help=argparse.SUPPRESS)
    p.add_argument("--work", type=Path, default=Path("/tmp/mindprint-plan-calibration"))
    p.add_argument("--shapes", nargs="+", default=list(SHAPES))
    p.add_argument("--backends", nargs="+", default=["pytorch", "mlx"])
    p.add_argument("--lengths", nargs="+", type=int, default=[128, 512])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS))
    p.add_argument("--dtypes", nargs="+", default=["float32"],
                   help="float32 by default: on a CPU without AVX512-BF16 bf16 matmuls are emulated (minutes a step)")
    p.add_argument("--write", action="store_true", help="also write benchmarks/memory_plan.md")
    p.add_argument("--measured", type=Path, default=ROOT / "benchmarks" / "memory_plan.json",
                   help="measured peaks, one entry per (shape, backend, dtype, tokens, variant); new runs replace "
                        "their entries, the table covers them all")
    p.add_argument("--report-only", action="store_true",
                   help="measure nothing: re-predict the stored measurements (after a planner change)")
    args = p.parse_args(argv)
    if args.child:
        b, m, n, v, d = args.child
        print(json.dumps(child(b, m, int(n), v, d)))
        return 0
    store: dict[str, dict[str, Any]] = json.loads(args.measured.read_text()) if args.measured.is_file() else {}
    if not args.report_only:
        _measure(args, store)
    rows = [table_row(entry) for entry in store.values()]
    rows.sort(key=lambda r: (r[0], r[1], r[2], r[3], r[4]))
    print(_table(rows))
    if args.write:
        _write(rows)
    return 0


def table_row(entry: dict[str, Any]) -> tuple[Any, ...]:
    """A table row: the stored measurement and today's prediction for it."""
    shape = ModelShape.from_config(SHAPES[entry["shape"]])
    pred = predicted(shape, entry["backend"], entry["tokens"], entry["variant"], entry["dtype"])
    err = (pred - entry["peak"]) / entry["peak"]
    return (entry["shape"], entry["backend"], entry["dtype"], entry["tokens"], entry["variant"], pred, entry["peak"],
            err, entry["load_peak"])


def _measure(args: argparse.Namespace, store: dict[str, dict[str, Any]]) -> None:
    for shape, dtype in itertools.product(args.shapes, args.dtypes):
        model_dir = build_model(shape, dtype, args.work / f"{shape}-{dtype}")
        for backend, length, variant in itertools.product(args.backends, args.lengths, args.variants):
            proc = subprocess.run([sys.executable, "-m", "tools.plan_calibrate", "--child", backend, str(model_dir),
                                   str(length), variant, dtype], cwd=ROOT, capture_output=True, text=True,
                                  env={**os.environ, "HF_HUB_DISABLE_PROGRESS_BARS": "1"})
            if proc.returncode != 0:
                print(f"{shape} {backend} {length} {variant}: FAILED\n{proc.stderr[-2000:]}", file=sys.stderr)
                continue
            got = json.loads(proc.stdout.strip().splitlines()[-1])
            entry = {"shape": shape, "backend": backend, "dtype": dtype, "tokens": length, "variant": variant,
                     **got, "measured_on": time.strftime("%Y-%m-%d")}
            store[f"{shape}/{backend}/{dtype}/{length}/{variant}"] = entry
            args.measured.write_text(json.dumps(store, indent=1, sort_keys=True) + "\n", encoding="utf-8")
            row = table_row(entry)
            print(f"{shape} {backend} {dtype} {length} {variant}: predicted {row[5] / 2**30:.2f} GiB, measured "
                  f"{got['peak'] / 2**30:.2f} GiB, error {row[7]:+.1%}, load peak {got['load_peak'] / 2**30:.2f} GiB "
                  f"({got['seconds']:.0f} s)", flush=True)


def _table(rows: list[tuple[Any, ...]]) -> str:
    gib = 2 ** 30
    lines = ["| model shape | backend | dtype | tokens | variant | predicted | measured (training) | error | load peak |",
             "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {s} | {b} | {d} | {n} | {v} | {pr / gib:.2f} GiB | {me / gib:.2f} GiB | {e:+.1%} | {lp / gib:.2f} GiB |"
              for s, b, d, n, v, pr, me, e, lp in rows]
    return "\n".join(lines)


def _write(rows: list[tuple[Any, ...]]) -> None:
    worst = max((abs(r[7]) for r in rows), default=float("nan"))
    (ROOT / "benchmarks" / "memory_plan.md").write_text(
        "# Memory planner vs measured peaks\n\n"
        "`uv run python -m tools.plan_calibrate --write`: load, then one SFT step (batch 1, CPU) in a fresh process\n"
        "per row, on random-weight models with the published Qwen2.5 shapes. Measured (training): the peak from the\n"
        "end of loading to the end of the step, model included — MLX `mx.get_peak_memory()`, torch the peak resident\n"
        "set (VmHWM) over the process's size before loading. Load peak: the same during loading alone (on torch it\n"
        "counts the checkpoint's pages mapped while bitsandbytes quantizes: page cache the OS can reclaim). Error =\n"
        "(predicted - measured) / measured. The measurements are kept in `memory_plan.json` (`--report-only`\n"
        "re-predicts them after a planner change); bf16 rows are few because this CPU emulates bf16 (3-12 min a step).\n\n"
        f"{_table(rows)}\n\nLargest error over {len(rows)} rows: {worst:.1%}.\n", encoding="utf-8")


if __name__ == "__main__":
    raise SystemExit(main())
