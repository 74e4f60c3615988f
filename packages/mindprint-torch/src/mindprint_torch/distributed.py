"""Data-parallel training with DDP through accelerate (docs/architecture.md, "Data parallel").

Start any script that trains with this backend under a launcher and TRL/HF Trainer run it with
DistributedDataParallel — NCCL on CUDA, gloo on CPU::

    torchrun --nproc-per-node 2 train.py                      # or: accelerate launch --num_processes 2 train.py
    torchrun --nnodes 2 --node-rank R --master-addr HOST --nproc-per-node 8 train.py   # several machines

What this backend adds on top of the HF Trainer (which already shards the data per rank through
accelerate's sharded data loader and all-reduces the gradients):

* :func:`ddp_args`: ``ddp_backend`` = gloo on CPU / nccl on CUDA, ``average_tokens_across_devices=True``
  (the loss of a step is the token-sum of each rank's micro-batches divided by the *global* token count
  of the step — all micro-batches, all ranks — times the world size, which DDP's gradient *mean* cancels:
  HF ``Trainer._get_num_items_in_batch`` / TRL ``SFTTrainer.compute_loss``),
  ``ddp_find_unused_parameters=False`` (every LoRA matrix gets a gradient);
* rank-aware side effects: only the main process (global rank 0) writes adapters; the others wait at a
  barrier (:func:`on_main_then_wait`), and only rank 0 calls the user's callbacks;
* on CUDA each process uses ``cuda:LOCAL_RANK`` (:func:`local_cuda_device`).

The logged metrics are the global ones: HF gathers the loss over the ranks before logging, the gradient
norm is computed on the all-reduced gradients, and TRL gathers its DPO reward metrics.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

from mindprint_interfaces import ranks

T = TypeVar("T")


def _env_int(*names: str, default: int) -> int:
    for name in names:
        value = os.environ.get(name)
        if value is not None and value.strip().lstrip("-").isdigit():
            return int(value)
    return default


def world_size() -> int:
    """Number of processes of the run (``WORLD_SIZE`` from torchrun / accelerate launch; 1 without a launcher)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return int(dist.get_world_size())
    return _env_int("WORLD_SIZE", default=1)


def rank() -> int:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return int(dist.get_rank())
    return _env_int("RANK", default=0)


def local_rank() -> int:
    return _env_int("LOCAL_RANK", default=0)


def is_main_process() -> bool:
    return rank() == 0


def launched() -> bool:
    return world_size() > 1


def local_cuda_device() -> str:
    """``cuda:LOCAL_RANK`` under a launcher, else ``cuda`` (each DDP process owns one GPU)."""
    return f"cuda:{local_rank()}" if launched() else "cuda"


def ddp_args(device: str) -> dict[str, Any]:
    """TrainingArguments for DDP (on one process only the token normalisation, which is then a no-op)."""
    backend = "gloo" if device == "cpu" else ("nccl" if device.startswith("cuda") else None)
    return {
        "ddp_backend": backend if launched() else None,  # a backend without a launcher makes accelerate fail
        "ddp_find_unused_parameters": False,
        "average_tokens_across_devices": True,
    }


def barrier() -> None:
    """Wait for every rank (no-op on one process or before the process group exists)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def on_main_then_wait(fn: Callable[[], T]) -> T | None:
    """Run ``fn`` on rank 0 only (e.g. write an adapter), then make every rank wait for it."""
    return ranks.on_main_then_wait(fn, is_main=is_main_process(), barrier=barrier)
