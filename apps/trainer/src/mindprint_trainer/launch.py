"""``--nproc N``: re-run the same ``mindprint`` command data parallel under the backend's own launcher.

The launcher and the variables that mark a launched process come from the backend's registry spec
(:class:`~mindprint_interfaces.BackendSpec`), so any registered backend with a launcher works. The two
shipped ones: pytorch runs ``python -m torch.distributed.run --standalone --nproc-per-node N -m
mindprint_trainer ...`` (DDP through accelerate), mlx runs ``mlx.launch -n N --backend ring -- python
-m mindprint_trainer ...`` (``mx.distributed``).

In the launched processes, rank 0 owns the run directory; every other rank trains into a throwaway
directory (the backends already let only rank 0 write adapters and call the progress callbacks) with
its standard output silenced. Several machines: use the launchers directly (README, "Multi-GPU /
multi-Mac training").
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence

from mindprint_interfaces import BackendRegistry


def strip_nproc(argv: Sequence[str]) -> list[str]:
    out: list[str] = []
    skip = False
    for i, arg in enumerate(argv):
        if skip:
            skip = False
            continue
        if arg == "--nproc":
            skip = i + 1 < len(argv)
            continue
        if arg.startswith("--nproc="):
            continue
        out.append(arg)
    return out


def launcher_command(backend: str, nproc: int, argv: Sequence[str]) -> list[str]:
    """The registered ``backend``'s launch command for this ``mindprint`` command (``--nproc`` removed)."""
    inner = [sys.executable, "-m", "mindprint_trainer", *strip_nproc(argv)]
    return BackendRegistry.spec(backend).launch_command(nproc, inner)


def in_launched_process() -> bool:
    """Whether a registered backend's launcher started this process (checked before the backend is known)."""
    return any(spec.launched() for spec in BackendRegistry.specs())


def launched_rank() -> int:
    for spec in BackendRegistry.specs():
        rank = spec.rank()
        if rank is not None:
            return rank
    return 0


def relaunch(backend: str, nproc: int, argv: Sequence[str]) -> int:
    """Run ``argv`` under the launcher and return its exit code."""
    cmd = launcher_command(backend, nproc, argv)
    sys.stderr.write(f"launching {nproc} processes: {' '.join(cmd)}\n")
    return subprocess.call(cmd)


def secondary_rank_output_dir(*, quiet: bool = True) -> str:
    """A throwaway output directory for ranks > 0 (removed at exit); silences their output unless not ``quiet``."""
    import atexit

    path = tempfile.mkdtemp(prefix=f"mindprint-rank{launched_rank()}-")
    atexit.register(shutil.rmtree, path, True)
    if quiet:  # rank 0 reports; a failing rank still shows in the launcher's exit status
        sys.stdout = sys.stderr = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 - lives with the process
    return path
