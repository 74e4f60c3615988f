"""Tensor-by-tensor check of a written merged model, once for both backends.

The logits probe of a verified merge only sees the tokens and paths the probe batch uses (a corrupted
embedding row of another token passes it). So every tensor in the written ``*.safetensors`` files is
compared with what it must be — the base weight, plus ``scale * B @ A`` where the adapter modifies it
— computed by the backend from the live (unmerged) model; a tensor missing, extra, of another shape
or differing beyond float rounding is a :class:`MergeVerificationError` and nothing is saved.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from pathlib import Path

import numpy as np

from mindprint_interfaces import MergeVerificationError

# fp32 merges reorder float operations: a merged tensor agrees with base + delta to ~1e-7 relative.
RELATIVE_TOLERANCE = 1e-5
ABSOLUTE_TOLERANCE = 1e-6

Expected = Mapping[str, Callable[[], np.ndarray]]  # tensor name -> its expected fp32 value (computed on demand)


def check_written_tensors(directory: Path, expected: Expected, *, optional: Collection[str] = (),
                          where: str = "merged model") -> int:
    """Compare every tensor of ``directory/*.safetensors`` with ``expected``; returns how many were checked."""
    from safetensors import safe_open

    from .adapter_files import read_tensors

    files = sorted(directory.glob("*.safetensors"))
    if not files:
        raise MergeVerificationError(f"{where}: no *.safetensors written; nothing was saved")
    problems: list[str] = []
    seen: set[str] = set()
    for file in files:
        try:
            with safe_open(str(file), framework="numpy") as fh:
                names = list(fh.keys())
            tensors = read_tensors(file)  # fp32, any float dtype
        except Exception as exc:  # an unreadable file is a failed merge
            raise MergeVerificationError(f"{where}: {file.name} cannot be read back: {exc}") from None
        for name in names:
            make = expected.get(name)
            if make is None:
                problems.append(f"{name}: not a tensor of the model")
                continue
            seen.add(name)
            got, want = tensors[name], make()
            if got.shape != want.shape:
                problems.append(f"{name}: shape {tuple(got.shape)}, expected {tuple(want.shape)}")
                continue
            diff = float(np.max(np.abs(got - want))) if got.size else 0.0
            tol = ABSOLUTE_TOLERANCE + RELATIVE_TOLERANCE * (float(np.max(np.abs(want))) if want.size else 0.0)
            if not diff <= tol:  # also catches NaN
                worst = np.unravel_index(int(np.nanargmax(np.abs(got - want))), got.shape) if got.size else ()
                problems.append(f"{name}: differs from base + adapter delta by {diff:.3g} at {tuple(int(i) for i in worst)} "
                                f"(tolerance {tol:.3g})")
        del tensors
    missing = sorted(set(expected) - seen - set(optional))
    problems += [f"{name}: missing from the written files" for name in missing[:5]]
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise MergeVerificationError(f"{where}: " + "; ".join(problems[:5]) + more + "; nothing was saved")
    return len(seen)
