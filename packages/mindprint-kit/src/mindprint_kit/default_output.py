"""Where ``trainer.train(data)`` writes when it is given no ``adapter_dir``.

With ``output_dir`` set by the user: ``<output_dir>/adapter``, as before. With ``output_dir`` left at its
default, never a fixed ``./outputs/adapter`` that the next run silently replaces: a fresh run directory
``outputs/<YYYYmmdd-HHMMSS>-<method>/adapter`` (named as the ``mindprint`` command names its runs), claimed by
``mkdir`` so two runs never share it, and announced on the ``mindprint`` logger (a warning: visible on stderr
without any logging set-up). ``TrainingResult.adapter_path`` holds the path either way.

A resumed ``train()`` without ``adapter_dir`` on the default ``output_dir`` continues the run it resumes, never
a fresh directory (:func:`resumed_adapter_dir`): its checkpoints sit in ``<output_dir>`` (adapter ``<output_dir>/adapter``) or in
``<adapter>-checkpoints`` beside the adapter.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import datetime
from pathlib import Path
from typing import Any

DEFAULT_ADAPTER_DIR = "adapter"
logger = logging.getLogger("mindprint")


def _default_output_dir(config: Any) -> Any:
    for f in dataclasses.fields(config) if dataclasses.is_dataclass(config) else ():
        if f.name == "output_dir":
            return f.default
    return None


def is_default_output(config: Any) -> bool:
    """True when ``output_dir`` is left at its default (then each ``train()`` gets a run directory of its own)."""
    return str(config.output_dir) == str(_default_output_dir(config))


CHECKPOINTS_SUFFIX = "-checkpoints"


def resumed_adapter_dir(config: Any, resume: Any) -> Path:
    """The adapter directory of the run that ``resume`` (a ``checkpoint-<step>`` path, or True) continues."""
    output_dir = Path(config.output_dir)
    if not is_default_output(config):
        return output_dir / DEFAULT_ADAPTER_DIR  # the user chose where this run writes (it may differ from the old)
    if resume is True:
        runs = sorted(output_dir.glob(f"*/{DEFAULT_ADAPTER_DIR}{CHECKPOINTS_SUFFIX}/checkpoint-*"),
                      key=lambda p: p.stat().st_mtime)
        return (runs[-1].parent.parent if runs else output_dir).resolve() / DEFAULT_ADAPTER_DIR
    root = Path(resume).resolve().parent
    if root.name.endswith(CHECKPOINTS_SUFFIX):
        return root.parent / root.name.removesuffix(CHECKPOINTS_SUFFIX)
    return root / DEFAULT_ADAPTER_DIR


def default_adapter_dir(config: Any, *, now: datetime | None = None) -> Path:
    """The adapter directory of a ``train()`` call without ``adapter_dir`` (see the module docstring)."""
    output_dir = Path(config.output_dir)
    if not is_default_output(config):
        return output_dir / DEFAULT_ADAPTER_DIR
    method = type(config).__name__.removesuffix("Config").lower() or "train"
    stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
    output_dir.mkdir(parents=True, exist_ok=True)
    run, n = output_dir / f"{stamp}-{method}", 1
    while True:
        try:
            run.mkdir()
            break
        except FileExistsError:
            n += 1
            run = output_dir / f"{stamp}-{method}-{n}"
    target = run.resolve() / DEFAULT_ADAPTER_DIR
    logger.warning("mindprint: train() got no adapter_dir and output_dir is the default %r: the adapter goes to "
                   "%s (pass adapter_dir= or set output_dir to choose)", str(config.output_dir), target)
    return target
