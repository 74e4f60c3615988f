"""Helpers for the trainer tests: run the installed ``mindprint`` command as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

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


@pytest.fixture
def run_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
            capsys: pytest.CaptureFixture[str]) -> Callable[..., Result]:
    """``mindprint ARGS`` in this process (cwd: the test's tmp_path): exit code and captured output."""
    from mindprint_trainer import cli

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.delenv("MINDPRINT_BACKEND", raising=False)

    def run(*args: str) -> Result:
        capsys.readouterr()
        code = cli.main(list(args))
        out = capsys.readouterr()
        return Result(code, out.out, out.err)

    return run
