"""``mindprint sft|dpo|orpo|cpo|kto --resume PATH``: which checkpoint PATH means.

PATH may be a ``checkpoint-<step>`` directory, a directory holding them (a trainer's ``output_dir``), or a
``mindprint`` run directory (its ``work/`` holds them while a run is unfinished): the newest complete
checkpoint is taken. The checkpoint may come from another backend (``--backend`` is free to differ).
A directory is first repaired (``recover_tree``): the run being resumed was usually killed, and the temporaries
its saves left (a half-written final adapter, say) belong to nobody once the resume writes a new run directory.
"""

from __future__ import annotations

from pathlib import Path

from mindprint_interfaces import ConfigError
from mindprint_interfaces.fileio import recover_tree


def resolve_resume(value: str) -> Path:
    from mindprint_kit import checkpoints  # installed with every backend

    path = Path(value)
    if not path.exists():
        raise ConfigError(f"--resume: {path}: file not found", key="resume")
    if (path / checkpoints.STATE_FILE).is_file():
        checkpoints.load_checkpoint(path)  # refuses an unfinished or altered one, naming the file
        return path
    if path.is_dir():
        recover_tree(path)  # finish interrupted swaps, drop the dead writer's temporaries
    for root in (path / "work", path):
        found = checkpoints.latest_checkpoint(root)
        if found is not None:
            return found
    raise ConfigError(f"--resume: {path}: no complete checkpoint-<step>/ in it (or in its work/); checkpoints are "
                      "written every save_steps steps", key="resume")
