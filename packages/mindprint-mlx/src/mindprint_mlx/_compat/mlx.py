"""Every mlx internal mindprint-mlx relies on, verified on the :data:`TESTED` range and nowhere else.

Private names, and why they are used:

* ``mlx._distributed_utils.launch``: the module behind mlx's ``mlx.launch`` console script. A
  data-parallel run is started through that script; when the script is not installed beside the
  interpreter (a venv run without its ``bin`` on the path, some installers skip console scripts), the
  module is run with ``python -m`` instead. The module is found first through the script's entry
  point metadata (public), and only then under its known private name (:func:`launch_prefix`).

Nothing here imports ``mlx.core`` (the BLAS preload must come first, see ``mindprint_mlx.blas``).
"""

from __future__ import annotations

import importlib.util
import sys
from importlib import metadata
from pathlib import Path

from mindprint_interfaces.compat import FastPath, Tested, fast_path

TESTED = Tested("mlx", "0.32", "0.33")

LAUNCH_SCRIPT = "mlx.launch"
LAUNCH_MODULE = "mlx._distributed_utils.launch"

LAUNCHER = "mlx.launcher"


def _entry_point_module() -> str | None:
    for entry in metadata.entry_points(group="console_scripts", name=LAUNCH_SCRIPT):
        return entry.module
    return None


def _module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def launch_prefix() -> list[str] | None:
    """The command that starts mlx's launcher (``-n N --backend ring -- CMD`` follow), or None without one."""
    script = Path(sys.executable).parent / LAUNCH_SCRIPT
    if script.exists():
        return [str(script)]
    for module in (_entry_point_module(), LAUNCH_MODULE):
        if module is not None and _module_exists(module):
            return [sys.executable, "-m", module]
    return None


def _launcher_problem() -> str | None:
    if launch_prefix() is not None:
        return None
    return f"neither the {LAUNCH_SCRIPT} script nor the {LAUNCH_MODULE} module is installed"


def fast_paths() -> list[FastPath]:
    """Which mlx reach-ins this installation supports, and why not where it does not."""
    return [fast_path(LAUNCHER, _launcher_problem())]
