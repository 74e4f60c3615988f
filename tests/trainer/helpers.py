"""Helpers for the trainer tests: run the installed ``mindprint`` command as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

DEMO_DATA = Path(__file__).resolve().parents[2] / "apps" / "trainer" / "src" / "mindprint_trainer" / "demo_data"


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


def mindprint_exe() -> list[str]:
    script = Path(sys.executable).parent / "mindprint"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "mindprint_trainer"]


def run_mindprint(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
                  timeout: float = 300, input: str | None = None) -> Result:
    # One thread: the tiny test models gain nothing from more, and a busy CI box loses a lot.
    full_env = {**os.environ, "COLUMNS": "200", "OMP_NUM_THREADS": "1", **(env or {})}
    if env is None or "MINDPRINT_BACKEND" not in env:
        full_env.pop("MINDPRINT_BACKEND", None)
    proc = subprocess.run([*mindprint_exe(), *args], capture_output=True, text=True, cwd=cwd, env=full_env,
                          timeout=timeout, check=False, input=input)
    return Result(proc.returncode, proc.stdout, proc.stderr)
