"""Driver: run every job in its own subprocess, then write results.json and RESULTS.md.

Usage (from the repository root)::

    uv run --group bench python -m tools.bench                 # full run on SmolLM2 -> benchmarks/
    uv run --group bench python -m tools.bench --only mlx-dpo  # a subset, merged into benchmarks/results.json
    uv run python -m tools.bench --smoke --out-dir /tmp/b      # 2 steps on a tiny model (the test does this)
    uv run --group bench python -m tools.bench --device cuda --quick   # a GPU host: SFT + DPO comparisons, bf16

``main(argv)`` is the entry point the ``mindprint bench`` command calls.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

from .baton import Baton, make_pipes, pass_on_behalf
from .common import JobSpec
from .jobs import COMPARISONS, JOBS, Comparison, JobDef, missing_requirement
from .measure import combine_rounds, load_average, thread_env
from .report import build_comparisons, build_efficiency, build_memory_checks, render_markdown

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = ROOT / "benchmarks"


# --device: what changes with the device (the rest of the code path is the same). Accelerators: bf16 and a batch of
# 8 (SFT sequences / DPO pairs), no thread set-up (the thread pools do not do the work there).
DEVICE_SETTINGS: dict[str, dict[str, Any]] = {
    "cpu": {"dtype": "float32", "batch_size": 2, "threads": True},
    "cuda": {"dtype": "bfloat16", "batch_size": 8, "threads": False},
    "mps": {"dtype": "bfloat16", "batch_size": 8, "threads": False},
}
# --quick: the SFT and DPO comparison of each backend (the ones that exist on the device), few steps
QUICK_COMPARISONS = ("torch_sft", "torch_dpo_defaults", "mlx_sft", "mlx_dpo")
QUICK_STEPS, QUICK_WARMUP = 8, 2

MERGED_RUN_KEYS = ("device", "date", "loadavg_start", "loadavg_end", "jobs_run_this_time", "git_commit", "machine", "steps",
                   "warmup")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mindprint bench", description="Training speed and memory of each mindprint "
                                "backend against the library a user would otherwise use (see benchmarks/RESULTS.md).")
    p.add_argument("--model", help="HF model directory (default: SmolLM2-135M-Instruct via tools/smollm2.py; "
                   "--smoke: a tiny random Llama)")
    p.add_argument("--steps", type=int, help=f"timed steps per job (default 20; --quick {QUICK_STEPS})")
    p.add_argument("--warmup", type=int, help=f"warm-up steps excluded from timing (default 2; --quick {QUICK_WARMUP})")
    p.add_argument("--batch-size", type=int, help="SFT sequences / DPO pairs per step (default 2 on cpu, 8 on cuda/mps)")
    p.add_argument("--device", choices=tuple(DEVICE_SETTINGS), default="cpu",
                   help="where the jobs train (default cpu). cuda/mps: bf16, batch 8, no thread set-up; torch jobs on "
                        "that device, MLX jobs on Metal for mps and skipped for cuda")
    p.add_argument("--quick", action="store_true",
                   help=f"only the SFT and DPO comparisons of each backend, {QUICK_WARMUP} warm-up + {QUICK_STEPS} "
                        "timed steps (the GPU check: `--device cuda --quick`)")
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--lr-sft", type=float, default=2e-4)
    p.add_argument("--lr-dpo", type=float, default=1e-4)
    p.add_argument("--beta", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--threads", type=int, default=2, help="threads per job (torch + BLAS pools; default 2)")
    p.add_argument("--eval-n", type=int, default=8, help="records in the fixed-set loss check (default 8)")
    p.add_argument("--amortise-over", type=int, default=100, help="run length for amortised one-off costs")
    p.add_argument("--only", action="append", default=[], metavar="SUBSTR",
                   help="run only jobs whose name contains SUBSTR (repeatable); results merge into the existing JSON")
    p.add_argument("--job", action="append", default=[], metavar="NAME",
                   help="run exactly this job (repeatable; see tools/bench/jobs.py); merges like --only")
    p.add_argument("--skip", action="append", default=[], metavar="SUBSTR", help="skip jobs whose name contains SUBSTR")
    p.add_argument("--no-refblas", action="store_true", help="skip the MLX peers on their as-installed reference BLAS")
    p.add_argument("--rounds", type=int, default=1,
                   help="measure every job N times, the job order reversed every other round, and pool the timed "
                        "steps (cancels a drift in machine speed; default 1)")
    p.add_argument("--interleave", action="store_true",
                   help="run the mindprint job and its peer of each selected comparison at the same time, taking "
                        "turns step by step (tools/bench/baton.py): both see the same machine speed, neither "
                        "competes for the cores; the comparison's ratio then comes from these paired runs")
    p.add_argument("--parallel", type=int, default=1, help="jobs at once (default 1; >1 only for smoke runs)")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per job before it is killed")
    p.add_argument("--out-dir", type=Path, help="where results.json / RESULTS.md go (default benchmarks/)")
    p.add_argument("--fresh", action="store_true", help="do not merge with an existing results.json")
    p.add_argument("--report-only", action="store_true",
                   help="re-render RESULTS.md (and the comparisons in results.json) from the existing results.json")
    p.add_argument("--merge-from", type=Path, action="append", default=[], metavar="RESULTS_JSON",
                   help="with --report-only: take the jobs of another results.json (e.g. a run of the other "
                   "backend in parallel) into this one")
    p.add_argument("--smoke", action="store_true", help="2 steps (1 warm-up + 1 timed) on a tiny model; "
                   "writes to a temporary directory unless --out-dir is given")
    return p


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _selected(args: argparse.Namespace) -> list[JobDef]:
    jobs = []
    for job in JOBS:
        if (args.only or args.job) and not (any(s in job.name for s in args.only) or job.name in args.job):
            continue
        if any(s in job.name for s in args.skip):
            continue
        # full_only jobs stay out of --smoke and --no-refblas runs unless --job names them; with --smoke an --only
        # match selects them too (`--smoke --only sftmix`)
        if args.quick and not any(job.name in (c.mindprint, c.peer) for c in COMPARISONS
                                  if c.key in QUICK_COMPARISONS):
            continue
        chosen = job.name in args.job or (args.smoke and any(sub in job.name for sub in args.only))
        if (args.smoke or args.no_refblas) and job.full_only and not chosen:
            continue
        jobs.append(job)
    return jobs


def _spec(job: JobDef, args: argparse.Namespace, model_dir: str, work_dir: Path) -> JobSpec:
    return JobSpec(
        name=job.name, backend=job.backend, task=job.task, side=job.side, variant=job.variant, model_dir=model_dir,
        work_dir=str(work_dir), steps=args.steps, warmup=args.warmup, batch_size=args.batch_size * job.batch_factor,
        max_length=int(job.options.get("max_length", args.max_length)),
        lr=args.lr_sft if job.task == "sft" else args.lr_dpo, beta=args.beta,
        seed=args.seed, eval_n=args.eval_n, threads=args.threads if DEVICE_SETTINGS[args.device]["threads"] else 0,
        amortise_over=args.amortise_over, device=args.device, dtype=DEVICE_SETTINGS[args.device]["dtype"],
        options=dict(job.options),
    )


def _env(spec: JobSpec) -> dict[str, str]:
    env = {**os.environ, **(thread_env(spec.threads) if spec.threads else {}), "TOKENIZERS_PARALLELISM": "false",
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    if spec.side == "peer" and spec.backend == "mlx" and spec.options.get("blas") != "openblas":
        env["MINDPRINT_MLX_BLAS"] = "off"
    return env


def run_jobs(batch: Sequence[tuple[JobDef, JobSpec]], work_dir: Path, timeout: float,
             extra_env: dict[str, str] | None = None, on_exit: Any = None) -> list[dict[str, Any]]:
    """Run ``batch`` in ONE child process (one job per process unless --smoke groups them).
    ``on_exit()`` is called when that process has ended, however it ended."""
    results: dict[str, dict[str, Any]] = {}
    argv: list[str] = []
    runnable: list[tuple[JobDef, JobSpec]] = []
    for job, spec in batch:
        reason = missing_requirement(job) or unsupported_on_device(job, spec.device)
        if reason is not None:
            results[job.name] = {"name": job.name, "ok": False, "skipped": reason}
            continue
        spec_path = work_dir / f"{job.name}.spec.json"
        spec_path.write_text(spec.to_json())
        argv += [str(spec_path), str(work_dir / f"{job.name}.result.json")]
        runnable.append((job, spec))
    if runnable:
        log = work_dir / f"{runnable[0][0].name}.log"
        started = time.perf_counter()
        code: int | None
        with log.open("w") as fh:
            try:
                code = subprocess.run([sys.executable, "-m", "tools.bench.job", *argv], cwd=ROOT,
                                      env={**_env(runnable[0][1]), **(extra_env or {})}, stdout=fh,
                                      stderr=subprocess.STDOUT, timeout=timeout * len(runnable), check=False).returncode
            except subprocess.TimeoutExpired:
                code = None
            finally:
                if on_exit is not None:
                    on_exit()
        for job, _spec_ in runnable:
            out_path = work_dir / f"{job.name}.result.json"
            if out_path.is_file():
                results[job.name] = json.loads(out_path.read_text())
            else:
                results[job.name] = {
                    "name": job.name, "ok": False, "log_tail": log.read_text(errors="replace")[-2000:],
                    "error": "timed out" if code is None else f"job process exited with {code} without a result"}
            results[job.name]["process_wall_s"] = time.perf_counter() - started
    out = []
    for job, _spec_ in batch:
        results[job.name]["label"] = job.label
        out.append(results[job.name])
    return out


def run_pair(first: tuple[JobDef, JobSpec], second: tuple[JobDef, JobSpec], work_dir: Path,
             timeout: float) -> list[dict[str, Any]]:
    """Run two jobs at once, taking turns step by step (``first`` starts); results in that order."""
    pipe_1, pipe_2 = make_pipes(work_dir, (first[0].name, second[0].name))
    # each job waits about half the time, so it gets twice the time before it is killed
    plans = [(first, Baton.env(pipe_1, pipe_2, first=True, timeout=timeout), pipe_2),
             (second, Baton.env(pipe_2, pipe_1, first=False, timeout=timeout), pipe_1)]
    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(run_jobs, [job], work_dir, 2 * timeout, env, lambda p=partner: pass_on_behalf(p))
                   for job, env, partner in plans]
        return [f.result()[0] for f in futures]


def unsupported_on_device(job: JobDef, device: str) -> str | None:
    """Why a job does not run on ``--device`` (MLX has no CUDA device), or None."""
    if job.backend == "mlx" and device == "cuda":
        return "--device cuda: MLX has no CUDA device (the MLX rows run with --device cpu, or mps for Metal)"
    return None


def check_device(device: str) -> None:
    """Refuse an accelerator this host does not have, before any job starts (SystemExit with the reason).
    Only the device asked for is probed: on ``cpu`` nothing is imported."""
    if device == "cpu":
        return
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch.cuda.is_available() is False on this host")
    if device == "mps" and not torch.backends.mps.is_available():
        raise SystemExit("--device mps: torch.backends.mps.is_available() is False on this host")


def probe_throughput(backend: str, args: argparse.Namespace, model_dir: str, work_dir: Path,
                     tokens: int) -> dict[str, Any]:
    """The machine's matmul throughput for ``backend`` (tools/bench/flops.py), in a process set up as that
    backend's jobs are (run_jobs: same environment and threads; MLX with mindprint-mlx's BLAS preload)."""
    from .flops import PROBE_TASK

    job = JobDef(f"{backend}-matmul-throughput", backend, PROBE_TASK, "probe", "matmul", "matmul throughput",
                 ("torch",) if backend == "torch" else ("mlx",))
    spec = _spec(job, args, model_dir, work_dir)
    spec.options = {"tokens": tokens}
    spec.warmup, spec.steps = (1, 3) if args.smoke else (2, 7)
    result = run_jobs([(job, spec)], work_dir, args.timeout)[0]
    result["date"] = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    result["git_commit"] = _git_commit()
    return result


def interleaved_pairs(jobs: Sequence[JobDef]) -> list[Comparison]:
    """The comparisons whose two jobs are both selected (each runs as one interleaved pair)."""
    names = {j.name for j in jobs}
    return [c for c in COMPARISONS if c.mindprint in names and c.peer in names]


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(list(argv) if argv is not None else None)
    check_device(args.device)
    settings = DEVICE_SETTINGS[args.device]
    if args.batch_size is None:
        args.batch_size = settings["batch_size"]
    if args.steps is None:
        args.steps = QUICK_STEPS if args.quick else 20
    if args.warmup is None:
        args.warmup = QUICK_WARMUP if args.quick else 2
    if args.smoke:
        args.steps, args.warmup, args.eval_n = 1, 1, min(args.eval_n, 4)
        if args.parallel == 1:
            args.parallel = 2
    if args.steps < 1 or args.warmup < 0:
        raise SystemExit("--steps must be >= 1 and --warmup >= 0")
    if args.report_only:
        return rerender(args.out_dir or DEFAULT_OUT, args.merge_from)
    out_dir: Path = args.out_dir or (Path(tempfile.mkdtemp(prefix="mindprint-bench-")) if args.smoke else DEFAULT_OUT)
    out_dir.mkdir(parents=True, exist_ok=True)
    work_dir = Path(tempfile.mkdtemp(prefix="work-", dir=out_dir if args.smoke else None))

    if args.model:
        model_dir = str(Path(args.model).resolve())
    elif args.smoke:
        from tools.tiny_model import build_tiny_llama

        model_dir = str(build_tiny_llama(work_dir / "tiny-llama"))
    else:
        from tools.smollm2 import ensure_smollm2

        model_dir = str(ensure_smollm2())

    jobs = _selected(args)
    results_path = out_dir / "results.json"
    previous: dict[str, Any] = {}
    if results_path.is_file() and not args.fresh and (args.only or args.job):
        previous = json.loads(results_path.read_text())
    job_results: dict[str, dict[str, Any]] = dict(previous.get("jobs", {}))
    loadavg_start = load_average()
    print(f"bench: {len(jobs)} jobs, model {model_dir}, load average {loadavg_start}, logs in {work_dir}", flush=True)

    # One process per job; --smoke groups each backend's jobs into one process (plumbing check only).
    # --interleave: each selected comparison runs as one pair of processes taking turns step by step.
    pairs = interleaved_pairs(jobs) if args.interleave else []
    paired = {name for c in pairs for name in (c.mindprint, c.peer)}
    singles = [j for j in jobs if j.name not in paired]
    groups: list[list[JobDef]] = [[j for j in singles if j.backend == b] for b in ("torch", "mlx")] \
        if args.smoke and not args.interleave else [[j] for j in singles]
    groups = [g for g in groups if g]
    if args.rounds < 1:
        raise SystemExit("--rounds must be >= 1")
    if args.rounds > 1 or args.interleave:
        args.parallel = 1  # rounds of one job share its result file; a pair already uses both cores in turn
    by_name = {j.name: j for j in JOBS}
    units: list[tuple[list[JobDef], Comparison | None]] = [(g, None) for g in groups] + \
        [([by_name[c.mindprint], by_name[c.peer]], c) for c in pairs]
    # the order of the units (and within a pair, who starts) is reversed every other round
    schedule = [(g if r % 2 == 0 else g[::-1], c) for r in range(args.rounds)
                for g, c in (units if r % 2 == 0 else units[::-1])]
    measured: set[str] = set()
    pair_results: dict[str, dict[str, dict[str, Any]]] = dict(previous.get("interleaved", {}))
    pairs_measured: set[str] = set()

    def one(unit: tuple[list[JobDef], Comparison | None]) -> list[dict[str, Any]]:
        group, pair = unit
        specs = [(j, _spec(j, args, model_dir, work_dir)) for j in group]
        if pair is not None:
            res = run_pair(specs[0], specs[1], work_dir, args.timeout)
        else:
            res = run_jobs(specs, work_dir, args.timeout)
        for job, result in zip(group, res):
            status = "ok" if result.get("ok") else f"FAILED: {result.get('skipped') or result.get('error')}"
            extra = f" {result['sec_per_step']:.3f} s/step" if result.get("ok") else ""
            print(f"  {job.name}:{extra} {status}{' (interleaved)' if pair else ''}", flush=True)
        return res

    from . import data

    meta: dict[str, Any] = {
        "model": model_dir if args.model or args.smoke else "SmolLM2-135M-Instruct (fp32, tools/smollm2.py)",
        "model_dir": model_dir, "smoke": args.smoke, "steps": args.steps, "warmup": args.warmup,
        "batch_size": args.batch_size, "max_length": args.max_length, "lr_sft": args.lr_sft, "lr_dpo": args.lr_dpo,
        "beta": args.beta, "seed": args.seed, "threads": args.threads if settings["threads"] else None,
        "device": args.device, "dtype": settings["dtype"], "quick": args.quick, "eval_n": args.eval_n,
        "amortise_over": args.amortise_over, "rounds": args.rounds, "interleave": args.interleave, "lora_r": 8, "lora_alpha": 16.0,
        "data": {"sft_records": data.NUM_SFT, "preference_pairs": data.NUM_PAIRS, "seed": data.SEED,
                 "sftmix_records": data.NUM_SFT_MIX,
                 "token_stats": _token_stats(model_dir, args)},
        "machine": f"{_cpu_name()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
                   f"Python {platform.python_version()}",
        "loadavg_start": loadavg_start, "git_commit": _git_commit(),
        "date": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "jobs_run_this_time": [j.name for j in jobs],
    }
    # A run of some jobs merges into the earlier results: the header stays the earlier run's and this run is
    # listed under merged_runs (which rows came from which commit, date and machine load).
    header = meta
    earlier_runs: list[dict[str, Any]] = []
    if previous and (args.only or args.job) and previous.get("meta"):
        header = dict(previous["meta"])
        earlier_runs = list(header.get("merged_runs", []))

    # The machine's matmul throughput (#19 point 4), once per run and backend, before the jobs, on a typical
    # step's tokens: batch x the SFT set's mean sequence length.
    throughput: dict[str, Any] = dict(previous.get("throughput", {}))
    step_tokens = max(1, round(args.batch_size * meta["data"]["token_stats"]["sft_sequence_tokens"]["mean"]))
    for backend in ("torch", "mlx"):
        if any(j.backend == backend and unsupported_on_device(j, args.device) is None for j in jobs):
            throughput[backend] = probe_throughput(backend, args, model_dir, work_dir, step_tokens)
            t = throughput[backend]
            status = f"{t['flops_per_s'] / 1e9:.1f} GFLOP/s" if t.get("ok") else \
                f"FAILED: {t.get('skipped') or t.get('error')}"
            print(f"  {backend} matmul throughput ({step_tokens} tokens): {status}", flush=True)

    def write() -> None:
        meta["loadavg_end"] = load_average()
        if header is not meta:
            header["merged_runs"] = [*earlier_runs, {k: meta.get(k) for k in MERGED_RUN_KEYS}]
        results: dict[str, Any] = {"meta": header, "jobs": job_results, "interleaved": pair_results,
                                   "throughput": throughput}
        results["efficiency"] = build_efficiency(job_results, throughput)
        results["comparisons"] = build_comparisons(job_results, pair_results)
        results["memory"] = build_memory_checks(job_results)
        notes = out_dir / "NOTES.md"
        if notes.is_file():
            results["analysis"] = notes.read_text()
        tmp = results_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(results, indent=1, default=str) + "\n")
        tmp.replace(results_path)
        (out_dir / "RESULTS.md").write_text(render_markdown(results))

    with ThreadPoolExecutor(max(1, args.parallel)) as pool:
        for (group, pair), res in zip(schedule, pool.map(one, schedule)):
            for job, result in zip(group, res):
                job_results[job.name] = combine_rounds(job_results[job.name], result) \
                    if job.name in measured else result
                measured.add(job.name)
            if pair is not None:
                side = {pair.mindprint: "mindprint", pair.peer: "peer"}
                fresh = {side[job.name]: result for job, result in zip(group, res)}
                if pair.key in pairs_measured:
                    fresh = {k: combine_rounds(pair_results[pair.key][k], v) for k, v in fresh.items()}
                pair_results[pair.key] = fresh
                pairs_measured.add(pair.key)
            write()  # after every job, so an interrupted run keeps what it measured
    write()
    print(f"bench: wrote {results_path} and {out_dir / 'RESULTS.md'}", flush=True)
    failed = [j.name for j in jobs if not job_results[j.name].get("ok") and "skipped" not in job_results[j.name]]
    return 1 if failed else 0


def rerender(out_dir: Path, merge_from: Sequence[Path] = ()) -> int:
    path = out_dir / "results.json"
    results = json.loads(path.read_text())
    for other_path in merge_from:
        other = json.loads(Path(other_path).read_text())
        results["jobs"].update(other["jobs"])
        results.setdefault("interleaved", {}).update(other.get("interleaved", {}))
        for backend, probe in (other.get("throughput") or {}).items():  # an earlier file may have none
            results.setdefault("throughput", {}).setdefault(backend, probe)
        meta = other["meta"]
        results["meta"].setdefault("merged_runs", []).append({k: meta.get(k) for k in MERGED_RUN_KEYS})
    results["comparisons"] = build_comparisons(results["jobs"], results.get("interleaved", {}))
    results["memory"] = build_memory_checks(results["jobs"])
    results["efficiency"] = build_efficiency(results["jobs"], results.get("throughput") or {})
    notes = out_dir / "NOTES.md"
    if notes.is_file():
        results["analysis"] = notes.read_text()
    path.write_text(json.dumps(results, indent=1, default=str) + "\n")
    (out_dir / "RESULTS.md").write_text(render_markdown(results))
    print(f"bench: re-rendered {out_dir / 'RESULTS.md'}")
    return 0


def _token_stats(model_dir: str, args: argparse.Namespace) -> dict[str, Any]:
    from transformers import AutoTokenizer

    from . import data
    from .common import JobSpec, prepare
    from .jobs import SFT_MIX

    hf = AutoTokenizer.from_pretrained(model_dir)
    spec = JobSpec(name="stats", backend="torch", task="sft", side="peer", variant="stats", model_dir=model_dir,
                   work_dir="", max_length=args.max_length)
    prep = prepare(spec, hf)
    mix_length = int(SFT_MIX["max_length"])
    mix = prepare(replace(spec, max_length=mix_length, options=dict(SFT_MIX)), hf)
    return data.token_stats(prep.sft, prep.pairs, mix.sft, mix_length)


__all__ = ["build_parser", "main"]
