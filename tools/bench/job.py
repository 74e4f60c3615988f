"""One measured job, run in its own process: ``python -m tools.bench.job SPEC.json OUT.json``.

Separate processes keep peak RSS per job and stop one library's state (allocator caches,
compiled graphs, preloaded BLAS, thread pools) from affecting another. The driver sets the
thread-count environment before this process starts.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from .baton import Baton
from .common import JobSpec, prepare, sequences_per_packed_row
from .measure import StepClock, device_peak_mb, hwm_mb, load_average, rss_mb, ru_maxrss_mb


def _preload_blas(result: dict[str, Any]) -> None:
    """Give a raw MLX peer the same optimised BLAS the mindprint MLX backend loads (variant ``*_openblas``)."""
    from mindprint_mlx.blas import preload_fast_blas

    result["blas"] = preload_fast_blas() or "bundled reference BLAS (no optimised BLAS found)"


def _match_packed_rows(spec: JobSpec, prep: Any, result: dict[str, Any]) -> None:
    """The length-mix rows (#19): a packed job's batch is B packed rows; an unpacked peer (``match_packed_rows``)
    gets the number of sequences that carries the same real tokens on average. Both are stated in the notes."""
    if not (spec.options.get("packing") or spec.options.get("match_packed_rows")):
        return
    per_row = sequences_per_packed_row(prep.sft, spec.max_length)
    rows = spec.batch_size
    result["sequences_per_packed_row"] = per_row
    if spec.options.get("packing"):
        result["packed_rows_per_step"] = rows
        result["sequences_per_step"] = rows * per_row
        result["notes"].append(f"packed: {rows} rows of <= {spec.max_length} tokens per step "
                               f"({rows * per_row:.1f} sequences on average)")
        return
    spec.batch_size = max(1, round(rows * per_row))
    result["batch_size"] = result["sequences_per_step"] = spec.sequences_per_step
    result["notes"].append(f"unpacked: {spec.batch_size} sequences per step = the real tokens of {rows} packed rows "
                           f"of <= {spec.max_length} tokens on average ({per_row:.2f} sequences per row)")


def _probe(spec: JobSpec) -> dict[str, Any]:
    """The machine's matmul throughput (:func:`tools.bench.flops.measure`), as a row that never raises."""
    from .flops import measure

    t0 = time.perf_counter()
    try:
        result = measure(spec)
    except BaseException as exc:  # noqa: BLE001 - reported, the bench goes on
        result = {"name": spec.name, "backend": spec.backend, "ok": False, "error": f"{type(exc).__name__}: {exc}",
                  "traceback": traceback.format_exc()}
    result["wall_s"] = time.perf_counter() - t0
    return result


def execute(spec: JobSpec) -> dict[str, Any]:
    from .flops import PROBE_TASK

    if spec.task == PROBE_TASK:
        return _probe(spec)
    baton = Baton.from_env()
    if baton is not None and not baton.first:
        baton.wait()  # the partner job goes first: imports, load, set-up and its first step
    try:
        return _execute(spec, baton)
    finally:
        if baton is not None:
            baton.release()


def _execute(spec: JobSpec, baton: Baton | None) -> dict[str, Any]:
    result: dict[str, Any] = {"name": spec.name, "backend": spec.backend, "task": spec.task, "side": spec.side,
                              "variant": spec.variant, "ok": False, "pid": os.getpid(), "notes": [],
                              "threads_env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")},
                              "loadavg_start": load_average(), "batch_size": spec.batch_size,
                              "device": spec.device, "dtype": spec.options.get("dtype", spec.dtype),
                              "sequences_per_step": spec.sequences_per_step}
    clock = StepClock(warmup=spec.warmup, baton=baton)
    t0 = time.perf_counter()
    try:
        if spec.backend == "mlx" and spec.side == "peer":
            if spec.options.get("blas") == "openblas":
                _preload_blas(result)
            else:
                result["blas"] = "bundled reference BLAS (as installed)"
            import mlx.core as mx  # after the BLAS preload

            mx.set_default_device(mx.gpu if spec.device == "mps" else mx.cpu)  # mindprint's: its device manager
        hf_tokenizer = None
        if spec.backend == "torch":
            from transformers import AutoTokenizer

            hf_tokenizer = AutoTokenizer.from_pretrained(spec.model_dir)
        prep = prepare(spec, hf_tokenizer)
        _match_packed_rows(spec, prep, result)
        result["rss_after_imports_mb"] = rss_mb()
        if spec.side == "mindprint":
            from . import mindprint_side

            mindprint_side.run(spec, prep, clock, result)
        elif spec.variant.startswith("trl"):
            from . import raw_trl

            raw_trl.run(spec, prep, clock, prep.tokenizer.hf, result)
        elif spec.variant.startswith("mlx_lm_lora"):
            from . import raw_mlx_lm_lora

            (raw_mlx_lm_lora.run_orpo if spec.task == "orpo" else raw_mlx_lm_lora.run)(spec, prep, clock, result)
        elif spec.variant.startswith("mlx_lm"):
            from . import raw_mlx_lm

            raw_mlx_lm.run(spec, prep, clock, result)
        else:
            raise ValueError(f"unknown variant {spec.variant!r}")
        result["train_peak_rss_mb"] = hwm_mb()
        result["peak_rss_mb"] = ru_maxrss_mb()
        if spec.device != "cpu":
            result["device_peak_mb"], result["device_peak_measure"] = device_peak_mb(spec.backend, spec.device)
        summary = clock.summary(spec.amortise_over)
        result.update(summary)
        n = summary["steps_recorded"]
        if clock.tokens and result.get("tokens_exact"):
            per_step = clock.tokens[:n]
            timed_tokens = per_step[summary["warmup_steps"]:]
            result["tokens_per_step"] = sum(timed_tokens) / len(timed_tokens)
            result["tokens_per_s"] = sum(timed_tokens) / sum(summary["step_times_s"][summary["warmup_steps"]:])
        else:
            result["tokens_exact"] = False
            result["tokens_per_step"] = prep.mean_sequence_tokens(spec.task) * spec.sequences_per_step
            result["tokens_per_s"] = result["tokens_per_step"] / summary["sec_per_step"]
        from .flops import job_flops_for

        result["flops"] = job_flops_for(spec, prep)  # per real token; the report x tokens/s / machine throughput
        losses = [x for x in clock.losses if x is not None and math.isfinite(x)]
        result["train_loss_history"] = clock.losses
        result["train_loss_last"] = losses[-1] if losses else None
        tail = losses[-5:]
        result["train_loss_last5_mean"] = sum(tail) / len(tail) if tail else None
        result["ok"] = summary["steps_recorded"] == spec.total_steps
        if not result["ok"]:
            result["error"] = f"recorded {summary['steps_recorded']} steps, expected {spec.total_steps}"
    except BaseException as exc:  # noqa: BLE001 - every failure becomes a reported row
        result["error"] = f"{type(exc).__name__}: {exc}"
        result["traceback"] = traceback.format_exc()
        result["peak_rss_mb"] = ru_maxrss_mb()
    result["wall_s"] = time.perf_counter() - t0
    if baton is not None:
        result["interleaved"] = {"first": baton.first, "turns": baton.turns, "waited_s": baton.waited}
        if baton.broken:
            result["notes"].append(baton.broken)
    result["loadavg_end"] = load_average()
    return result


def main(argv: list[str] | None = None) -> int:
    """``SPEC OUT [SPEC OUT ...]``: several pairs run one after another in this process (``--smoke`` only:
    it saves the per-process import time; measured runs always use one process per job)."""
    args = sys.argv[1:] if argv is None else argv
    if not args or len(args) % 2:
        print("usage: python -m tools.bench.job SPEC.json OUT.json [SPEC.json OUT.json ...]", file=sys.stderr)
        return 2
    ok = True
    for spec_path, out_path in zip(args[::2], args[1::2]):
        result = execute(JobSpec.from_file(spec_path))
        Path(out_path).write_text(json.dumps(result, indent=1, default=str))
        ok = ok and bool(result["ok"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
