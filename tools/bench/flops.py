"""How close each job runs to the machine's matmul limit (#19 point 4).

Two halves, both on the model's own shapes (``mindprint_interfaces.memory_plan.ModelShape`` from its
``config.json``):

* :func:`measure` — the machine's matmul throughput, taken once per bench run and backend in a process set up as
  the jobs are (``tools.bench.cli.run_jobs``: same thread environment, ``torch.set_num_threads``; MLX with
  mindprint-mlx's OpenBLAS preload, as its jobs get it). For each linear of a decoder layer (q, k, v, o, gate,
  up, down) and the LM head it times ``(tokens x in) @ (in x out)`` — torch: ``torch.mm`` against the transposed
  view of an ``(out, in)`` weight, which is what ``nn.Linear`` runs; MLX: ``mx.matmul(x, w.T)`` + ``mx.eval`` — with
  ``tokens`` = a typical step's real tokens. Per shape FLOP/s = 2 m k n / median time; the backend's figure is the
  throughput of the model's own mix, ``sum(count x 2 m k n) / sum(count x median time)`` with count = the number of
  layers for a decoder linear and 1 for the head (the rate a forward pass's matmuls would get).
* :func:`job_flops` — the work a job's step does, per real token (see its docstring); the report multiplies it by
  the job's measured tokens/s and divides by the throughput.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from typing import Any

from mindprint_interfaces.memory_plan import ModelShape

from .common import JobSpec, Prepared

HEAD = "lm_head"
PROBE_TASK = "throughput"  # the JobSpec task of the throughput probe (tools.bench.job dispatches on it)
GOALS = {"torch": 0.70, "mlx": 0.60}  # #19 point 4: achieved / machine matmul throughput


def matmul_shapes(shape: ModelShape, tokens: int) -> dict[str, tuple[int, int, int]]:
    """``name -> (m, k, n)``: the decoder layer's linears and the LM head, ``tokens`` rows each."""
    out = {name: (tokens, k, n) for name, (k, n) in shape.linear_shapes().items()}
    out[HEAD] = (tokens, shape.hidden, shape.vocab)
    return out


def shape_counts(shape: ModelShape) -> dict[str, int]:
    """How many times each matmul of :func:`matmul_shapes` runs in one forward pass."""
    return {**{name: shape.layers for name in shape.linear_shapes()}, HEAD: 1}


def scored_fraction(prep: Prepared, task: str) -> float:
    """Share of a step's real tokens whose position carries a loss term (the positions the LM head must score):
    SFT the completion (label) tokens; preference methods the chosen and rejected completion tokens of each pair
    (KTO's unpaired records are the same prompt + completion rows)."""
    if task == "sft":
        return sum(e.num_loss_tokens for e in prep.sft) / sum(len(e.input_ids) for e in prep.sft)
    completions = sum(len(p.chosen_ids) + len(p.rejected_ids) for p in prep.pairs)
    return completions / sum(2 * len(p.prompt_ids) + len(p.chosen_ids) + len(p.rejected_ids) for p in prep.pairs)


def job_flops(shape: ModelShape, scored: float) -> dict[str, float]:
    """FLOPs per real token of one training step with a frozen base and LoRA adapters.

    What is counted, per real (non-padding) token of the rows the policy trains on:

    * decoder linears: ``4 x`` their weights (q, k, v, o, gate, up, down over every layer) — 2 for the forward
      matmul, 2 for the backward matmul that carries the gradient to the layer's input; no weight-gradient matmul,
      because the base weights are frozen;
    * LM head: ``4 x hidden x vocab`` on the scored positions only (the ``scored`` share of the tokens:
      :func:`scored_fraction`) — forward and input gradient; it would be ``6 x`` if the head were trained, which
      a LoRA run never does (its weights are the frozen, tied embedding).

    Not counted (so the figure is the work the step needs, not the work an implementation does): the LoRA matrices
    themselves (r=8: < 1 % of a linear's FLOPs), attention scores and softmax (``QK^T``, ``AV``: a few % at these
    sequence lengths), norms and element-wise work, the LM head on positions without a loss (TRL's CPU head
    projects every padded position), gradient checkpointing's recomputed forward, and a DPO/KTO reference pass:
    mindprint precomputes it before step 1 (a one-off, in the one-off seconds), so a job that recomputes it every
    step (TRL's defaults, ``precompute_ref_log_probs=False``, KTO's KL rows) does that work on top of the counted
    figure and shows a lower fraction. DPO/ORPO count the chosen and rejected rows of each pair as the jobs record
    their tokens (mindprint's shared-prefix forward runs the prompt once, so it does less than it is credited for).
    """
    decoder = 4.0 * shape.layers * shape.layer_linear_params
    head = 4.0 * shape.hidden * shape.vocab * scored
    return {"decoder_per_token": decoder, "head_per_token": head, "per_token": decoder + head,
            "scored_fraction": scored}


def job_flops_for(spec: JobSpec, prep: Prepared) -> dict[str, float]:
    return job_flops(ModelShape.from_directory(spec.model_dir), scored_fraction(prep, spec.task))


def aggregate(per_shape: Mapping[str, Mapping[str, Any]], counts: Mapping[str, int]) -> float:
    """The throughput of the model's matmul mix: total FLOPs / total time, each shape weighted by its count."""
    flops = sum(counts[n] * 2.0 * s["m"] * s["k"] * s["n"] for n, s in per_shape.items())
    seconds = sum(counts[n] * s["median_s"] for n, s in per_shape.items())
    return flops / seconds


def _time(run: Callable[[], None], warmup: int, repeats: int) -> list[float]:
    times = []
    for i in range(warmup + repeats):
        t = time.perf_counter()
        run()
        if i >= warmup:
            times.append(time.perf_counter() - t)
    return times


def _torch_runner(spec: JobSpec, m: int, k: int, n: int) -> Callable[[], None]:
    import torch

    dev = torch.device(spec.device)
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[spec.dtype]
    gen = torch.Generator().manual_seed(spec.seed)
    x = torch.randn(m, k, generator=gen).to(dev, dtype)
    w = torch.randn(n, k, generator=gen).to(dev, dtype)  # nn.Linear's (out, in) layout
    out = torch.empty(m, n, device=dev, dtype=dtype)
    device = spec.device

    def run() -> None:
        torch.mm(x, w.t(), out=out)
        if device == "cuda":
            torch.cuda.synchronize()
        elif device == "mps":
            torch.mps.synchronize()

    return run


def _mlx_runner(spec: JobSpec, m: int, k: int, n: int) -> Callable[[], None]:
    import mlx.core as mx

    dtype = {"float32": mx.float32, "bfloat16": mx.bfloat16, "float16": mx.float16}[spec.dtype]
    mx.random.seed(spec.seed)
    x = mx.random.normal((m, k)).astype(dtype)
    w = mx.random.normal((n, k)).astype(dtype)  # nn.Linear's (out, in) layout
    mx.eval(x, w)

    def run() -> None:
        mx.eval(mx.matmul(x, w.T))

    return run


def measure(spec: JobSpec) -> dict[str, Any]:
    """The throughput probe (run by ``tools.bench.job`` in the jobs' process set-up). ``spec.options['tokens']``
    is m; ``spec.warmup`` untimed and ``spec.steps`` timed repetitions of each matmul."""
    result: dict[str, Any] = {"name": spec.name, "backend": spec.backend, "task": PROBE_TASK, "ok": False,
                              "device": spec.device, "dtype": spec.dtype, "threads": spec.threads or None}
    if spec.backend == "mlx":
        from mindprint_mlx.blas import preload_fast_blas  # before mlx.core, as MLXBackend does for its jobs

        result["blas"] = preload_fast_blas() or "bundled reference BLAS (no optimised BLAS found)"
        import mlx.core as mx

        mx.set_default_device(mx.gpu if spec.device == "mps" else mx.cpu)
        runner = _mlx_runner
        result["library"] = "mlx: mx.matmul(x, w.T) + mx.eval"
    else:
        import torch

        if spec.threads:
            torch.set_num_threads(spec.threads)
        runner = _torch_runner
        result["library"] = f"torch {torch.__version__}: torch.mm(x, w.t())"
    shape = ModelShape.from_directory(spec.model_dir)
    tokens = int(spec.options["tokens"])
    counts = shape_counts(shape)
    per_shape: dict[str, dict[str, Any]] = {}
    for name, (m, k, n) in matmul_shapes(shape, tokens).items():
        times = _time(runner(spec, m, k, n), spec.warmup, spec.steps)
        median = statistics.median(times)
        per_shape[name] = {"m": m, "k": k, "n": n, "count": counts[name], "median_s": median,
                           "flops_per_s": 2.0 * m * k * n / median}
    result.update({"tokens": tokens, "warmup": spec.warmup, "repeats": spec.steps, "per_shape": per_shape,
                   "flops_per_s": aggregate(per_shape, counts), "ok": True})
    return result


__all__ = ["GOALS", "HEAD", "PROBE_TASK", "aggregate", "job_flops", "job_flops_for", "matmul_shapes", "measure",
           "scored_fraction", "shape_counts"]
