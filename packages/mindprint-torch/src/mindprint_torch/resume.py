"""torch's side of the kit's full-state checkpoints (:mod:`mindprint_kit.checkpoints`).

The HF Trainer's ``torch.optim.AdamW`` keeps ``exp_avg`` / ``exp_avg_sq`` / ``step`` per parameter; the
parameters are named as in ``PeftModel.named_parameters()`` (``...lora_A.default.weight``), which is the
checkpoint's key (``LoraKey.peft_parameter()``), in PEFT orientation already. The LR scheduler (a
``LambdaLR``) is moved to the checkpoint's step; the RNGs are torch's CPU generator (and CUDA's when there is
one), numpy's and Python's, which is what the HF Trainer itself saves.
"""

from __future__ import annotations

import random
import warnings
from typing import Any

import numpy as np
import torch

from mindprint_interfaces import ConfigError
from mindprint_kit.checkpoints import Moments


def _names(model: Any) -> dict[int, str]:
    return {id(p): name for name, p in model.named_parameters() if p.requires_grad}


def export_moments(optimizer: Any, model: Any) -> tuple[int, Moments]:
    names = _names(model)
    moments: Moments = {}
    step = 0
    for group in optimizer.param_groups:
        for p in group["params"]:
            name = names.get(id(p))
            if name is None:
                continue
            state = optimizer.state.get(p) or {}
            if "exp_avg" not in state:
                zeros = np.zeros(tuple(p.shape), dtype=np.float32)
                moments[name] = {"exp_avg": zeros, "exp_avg_sq": zeros.copy()}
                continue
            step = max(step, int(float(state["step"])))
            moments[name] = {k: state[k].detach().float().cpu().numpy().copy() for k in ("exp_avg", "exp_avg_sq")}
    return step, moments


def import_moments(optimizer: Any, model: Any, step: int, moments: Moments) -> None:
    names = _names(model)
    wanted = set(moments)
    for group in optimizer.param_groups:
        for p in group["params"]:
            name = names.get(id(p))
            if name is None:
                continue
            saved = moments.get(name)
            if saved is None:
                raise ConfigError(f"resume_from_checkpoint: no optimizer state for {name}", key="resume_from_checkpoint")
            if tuple(saved["exp_avg"].shape) != tuple(p.shape):
                raise ConfigError(f"resume_from_checkpoint: optimizer state of {name} has shape "
                                  f"{list(saved['exp_avg'].shape)}, the parameter {list(p.shape)}",
                                  key="resume_from_checkpoint")
            wanted.discard(name)
            optimizer.state[p] = {
                "step": torch.tensor(float(step), dtype=torch.float32),
                "exp_avg": torch.from_numpy(np.array(saved["exp_avg"])).to(device=p.device, dtype=p.dtype),
                "exp_avg_sq": torch.from_numpy(np.array(saved["exp_avg_sq"])).to(device=p.device, dtype=p.dtype),
            }
    if wanted:
        raise ConfigError("resume_from_checkpoint: optimizer state for parameters this model lacks: "
                          f"{', '.join(sorted(wanted)[:3])}", key="resume_from_checkpoint")


def move_scheduler(scheduler: Any, step: int) -> None:
    """Put an LR scheduler where it is after ``step`` optimizer steps (its next LR: the one of step ``step``)."""
    inner = getattr(scheduler, "scheduler", scheduler)  # accelerate's AcceleratedScheduler wraps it
    inner.last_epoch = step - 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "lr_scheduler.step() before optimizer.step()": intended here
        inner.step()


def rng_state() -> dict[str, np.ndarray]:
    kind, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    version, internal, py_gauss = random.getstate()
    out = {
        "torch.cpu": torch.get_rng_state().numpy().copy(),
        "numpy.keys": np.asarray(keys, dtype=np.uint32),
        "numpy.pos": np.asarray([pos, has_gauss], dtype=np.int64),
        "numpy.gauss": np.asarray([gauss], dtype=np.float64),
        "python.state": np.asarray([version, *internal], dtype=np.int64),
        "python.gauss": np.asarray([np.nan if py_gauss is None else py_gauss], dtype=np.float64),
    }
    if torch.cuda.is_available():
        out["torch.cuda"] = np.stack([s.numpy() for s in torch.cuda.get_rng_state_all()])
    return out


def restore_rng(rng: dict[str, np.ndarray], seed: int, step: int) -> None:
    """Restore the generators; a checkpoint from another backend has none: seeded from seed and step."""
    if "torch.cpu" not in rng:
        from transformers import set_seed

        set_seed(seed + step)
        return
    torch.set_rng_state(torch.from_numpy(np.array(rng["torch.cpu"], dtype=np.uint8)))
    pos, has_gauss = (int(v) for v in rng["numpy.pos"])
    np.random.set_state(("MT19937", np.array(rng["numpy.keys"], dtype=np.uint32), pos, has_gauss,
                         float(rng["numpy.gauss"][0])))
    state = [int(v) for v in rng["python.state"]]
    py_gauss = float(rng["python.gauss"][0])
    random.setstate((state[0], tuple(state[1:]), None if np.isnan(py_gauss) else py_gauss))
    if "torch.cuda" in rng and torch.cuda.is_available() and len(rng["torch.cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([torch.from_numpy(np.array(s, dtype=np.uint8)) for s in rng["torch.cuda"]])
