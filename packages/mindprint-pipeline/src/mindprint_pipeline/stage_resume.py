"""Which step checkpoint an interrupted curriculum stage continues from (a resume inside a topic).

With ``save_steps`` set in a stage's section, its trainer writes ``checkpoint-<step>/`` next to the stage's
adapter (:func:`mindprint_interfaces.checkpoint_layout.checkpoint_root`). The decisions:

* a resumed stage continues from its newest step checkpoint, through the Trainer protocol's
  ``train(..., resume_from_checkpoint=path)``; the trainer checks it against this run and refuses another base
  model, LoRA shape, data or training keys with its reasons (ConfigError). The curriculum's fingerprint matched
  already, so such a difference means files changed under the run: it is refused, never guessed around;
* a newest checkpoint at the stage's last step (torch saves there too; the kill came before the final save)
  is passed on all the same: the trainer returns it as the stage's result without training again;
* a stage that starts afresh (a new attempt, or a resumed attempt before this stage) first
  removes checkpoints an earlier run left in its directory, logged: they may come from another starting
  adapter, which no checkpoint fingerprint covers.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from mindprint_interfaces.checkpoint_layout import checkpoint_root, step_checkpoints

log = logging.getLogger("mindprint_pipeline")


def resume_point(adapter_dir: Path, *, resuming: bool, what: str) -> Path | None:
    """The checkpoint the stage writing ``adapter_dir`` continues from, or None (it starts afresh)."""
    root = checkpoint_root(adapter_dir)
    found = step_checkpoints(root) if resuming else []
    if found:
        newest = found[0]
        log.info("resume: %s continues from %s (step %d of %d)", what, newest.path, newest.global_step,
                 newest.total_steps)
        return newest.path
    if resuming:
        log.info("resume: %s has no step checkpoint; the stage starts over", what)
    if root.is_dir():
        log.info("%s: removing the step checkpoints an earlier run left in %s", what, root)
        shutil.rmtree(root)
    return None
