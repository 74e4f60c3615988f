"""Step plan and learning-rate schedule with the HF Trainer's semantics.

* total optimizer steps = ``max_steps`` if > 0, else ``ceil(num_epochs * ceil(N / (batch * accum)))``;
* warmup = ``warmup_steps`` if > 0, else ``ceil(total * warmup_ratio)``;
* the LR used by optimizer step k (0-based) is ``schedule(k)``, as ``get_scheduler`` +
  ``scheduler.step()`` after every ``optimizer.step()`` (and that LR is what is logged);
* each epoch visits the examples in a fresh order drawn from ``seed``; an epoch's last optimizer
  step may hold fewer micro-batches (as HF does with a remainder).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from mindprint_interfaces import ConfigError


def steps_per_epoch(num_examples: int, batch_size: int, accumulation: int) -> int:
    return max(1, math.ceil(num_examples / (batch_size * accumulation)))


def total_steps(num_examples: int, batch_size: int, accumulation: int, num_epochs: float, max_steps: int) -> int:
    if max_steps > 0:
        return max_steps
    return max(1, math.ceil(num_epochs * steps_per_epoch(num_examples, batch_size, accumulation)))


def warmup_steps(total: int, warmup_steps: int, warmup_ratio: float) -> int:
    return warmup_steps if warmup_steps > 0 else math.ceil(total * warmup_ratio)


def check_warmup(num_examples: int, batch_size: int, accumulation: int, num_epochs: float, max_steps: int,
                 warmup: int) -> None:
    """Refuse ``warmup_steps`` beyond the run's optimizer steps: the learning rate would never reach its peak, the
    run would train (next to) nothing and still report success. Counted for one process (the most steps a run of
    these examples can have), so a data-parallel run is never refused wrongly."""
    total = total_steps(num_examples, batch_size, accumulation, num_epochs, max_steps)
    if warmup > total:
        raise ConfigError(f"warmup_steps={warmup} is more than the run's {total} optimizer steps: the learning rate "
                          "would never reach learning_rate (lower warmup_steps, or use warmup_ratio)",
                          key="warmup_steps")


def lr_factor(kind: str, step: int, total: int, warmup: int) -> float:
    """transformers' lr_lambda for ``linear``, ``cosine``, ``constant``, ``constant_with_warmup``."""
    if kind == "constant":
        return 1.0
    if step < warmup:
        return step / max(1, warmup)
    if kind == "constant_with_warmup":
        return 1.0
    if kind == "linear":
        return max(0.0, (total - step) / max(1, total - warmup))
    if kind == "cosine":
        progress = (step - warmup) / max(1, total - warmup)
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * 0.5 * 2.0 * progress)))
    raise ValueError(f"unknown lr_scheduler {kind!r}")


def epoch_order(num_examples: int, seed: int, epoch: int, shuffle: bool = True) -> list[int]:
    """The example order of epoch ``epoch`` (0-based): ``default_rng(seed + epoch)``'s permutation, or in order.
    Every backend walks its epochs in this order (torch through :mod:`mindprint_torch.sampler`)."""
    if not shuffle:
        return list(range(num_examples))
    return [int(i) for i in np.random.default_rng(seed + epoch).permutation(num_examples)]


@dataclass(frozen=True)
class PlannedStep:
    index: int  # 0-based optimizer step
    micro_batches: tuple[tuple[int, ...], ...]  # example indices of each micro-batch
    epoch: float  # fractional epoch reached after this step


def plan_steps(num_examples: int, batch_size: int, accumulation: int, total: int, seed: int,
               shuffle: bool = True) -> Iterator[PlannedStep]:
    """Yield ``total`` optimizer steps, walking as many shuffled (or, ``shuffle=False``, in-order) epochs as needed."""
    per_epoch = steps_per_epoch(num_examples, batch_size, accumulation)
    step = 0
    epoch = 0
    while step < total:
        order = epoch_order(num_examples, seed, epoch, shuffle)
        micro = [tuple(order[i:i + batch_size]) for i in range(0, num_examples, batch_size)]
        for start in range(0, len(micro), accumulation):
            if step >= total:
                return
            in_epoch = start // accumulation + 1
            yield PlannedStep(step, tuple(micro[start:start + accumulation]), epoch + in_epoch / per_epoch)
            step += 1
        epoch += 1
