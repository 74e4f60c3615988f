"""The ``mlx`` entry of the ``mindprint.backends`` registry. Imports no mlx: everything heavy is a lazy path."""

from __future__ import annotations

from collections.abc import Sequence

from mindprint_interfaces import ConfigError
from mindprint_interfaces.backend_spec import BackendSpec

from ._compat.mlx import launch_prefix


def launch_command(nproc: int, inner_argv: Sequence[str]) -> list[str]:
    """``mlx.launch -n N --backend ring -- <inner argv>`` (``mx.distributed`` over local sockets).

    The ``mlx.launch`` script next to the interpreter when it is there, else the module it runs
    (:func:`mindprint_mlx._compat.mlx.launch_prefix`).
    """
    prefix = launch_prefix()
    if prefix is None:
        raise ConfigError("--nproc: mlx's launcher (mlx.launch) is not installed with this mlx", key="nproc")
    return [*prefix, "-n", str(nproc), "--backend", "ring", "--", *inner_argv]


SPEC = BackendSpec(
    name="mlx",
    factory="mindprint_mlx.backend:MLXBackend",
    launcher=launch_command,
    converter="mindprint_mlx.adapters:convert_adapter",
    launch_env=("MLX_RANK",),
    rank_env="MLX_RANK",
    distributions=("mindprint-mlx", "mlx", "mlx-lm", "safetensors", "numpy"),
)
