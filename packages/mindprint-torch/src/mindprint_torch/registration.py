"""The ``pytorch`` entry of the ``mindprint.backends`` registry. Imports no torch: everything heavy is a lazy path."""

from __future__ import annotations

from collections.abc import Sequence

from mindprint_interfaces.backend_spec import BackendSpec


def launch_command(nproc: int, inner_argv: Sequence[str]) -> list[str]:
    """``python -m torch.distributed.run --standalone --nproc-per-node N <inner args>`` (DDP through accelerate).

    ``inner_argv`` starts with the Python interpreter; torchrun runs the rest of it under that interpreter.
    """
    python, *args = inner_argv
    return [python, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc), *args]


SPEC = BackendSpec(
    name="pytorch",
    factory="mindprint_torch.backend:PyTorchBackend",
    launcher=launch_command,
    converter="mindprint_torch.adapters:convert_adapter",
    launch_env=("WORLD_SIZE",),
    rank_env="RANK",
    wraps=("transformers", "peft"),
    distributions=("mindprint-torch", "torch", "transformers", "peft", "trl", "safetensors", "numpy"),
)
