"""``mindprint sft|dpo|orpo|cpo|kto --resume PATH``: which checkpoint PATH means.

PATH may be a ``checkpoint-<step>`` directory, a directory holding them (a trainer's ``output_dir``), or a
``mindprint`` run directory (its ``work/`` holds them while a run is unfinished): the newest complete
checkpoint is taken. The checkpoint may come from another backend (``--backend`` is free to differ).
"""

from __future__ import annotations

from pathlib import Path

from mindprint_interfaces import ConfigError


def resolve_resume(value: str) -> Path:
    from mindprint_kit import checkpoints  # installed with every backend

    path = Path(value)
    if not path.exists():
        raise ConfigError(f"--resume: {path}: file not found", key="resume")
    if (path / checkpoints.STATE_FILE).is_file():
        checkpoints.load_checkpoint(path)  # refuses an unfinished or altered one, naming the file
        return path
    for root in (path / "work", path):
        found = checkpoints.latest_checkpoint(root)
        if found is not None:
            return found
    raise ConfigError(f"--resume: {path}: no complete checkpoint-<step>/ in it (or in its work/); checkpoints are "
                      "written every save_steps steps", key="resume")
