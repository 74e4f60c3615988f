"""``--resume RUN_DIR`` first repairs the run it reads: a killed run's temporaries do not outlive the resume (#20)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mindprint_interfaces import ConfigError
from mindprint_trainer.resume_arg import resolve_resume


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_resume_removes_a_dead_writers_temporaries_and_keeps_a_live_ones(tmp_path: Path) -> None:
    run = tmp_path / "run"
    dead = run / "adapters" / f".sft.tmp-{_dead_pid()}-abc123"  # a final adapter the kill cut short
    live = run / "adapters" / f".dpo.tmp-{os.getpid()}-def456"  # a writer still at work
    for d in (dead, live):
        d.mkdir(parents=True)
        (d / "adapter_model.safetensors").write_bytes(b"partial")
    with pytest.raises(ConfigError, match="no complete checkpoint"):
        resolve_resume(str(run))
    assert not dead.exists()
    assert live.exists()


def test_an_interrupted_swap_is_finished(tmp_path: Path) -> None:
    run = tmp_path / "run"
    new = run / "adapters" / f".sft.new-{_dead_pid()}"  # killed between the two renames: only the new copy
    new.mkdir(parents=True)
    (new / "adapter_config.json").write_text("{}")
    with pytest.raises(ConfigError):
        resolve_resume(str(run))
    assert (run / "adapters" / "sft" / "adapter_config.json").read_text() == "{}"
    assert not new.exists()
