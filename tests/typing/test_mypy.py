"""Strict mypy over the whole workspace, including each backend's static protocol conformance
(``_conformance.py``) and the ``assert_type`` checks in this folder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_mypy_strict_workspace_and_typing_checks() -> None:
    cmd = [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml")]
    workspace = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert workspace.returncode == 0, workspace.stdout + workspace.stderr
    typing_checks = subprocess.run(cmd + [str(ROOT / "tests" / "typing" / "assert_types.py")], cwd=ROOT,
                                   capture_output=True, text=True)
    assert typing_checks.returncode == 0, typing_checks.stdout + typing_checks.stderr


def test_a_protocol_violation_is_caught(tmp_path: Path) -> None:
    """The conformance pattern must be able to fail: a class missing a method is rejected."""
    bad = tmp_path / "bad_backend.py"
    bad.write_text(
        "from mindprint_interfaces import Backend, BackendConfig\n"
        "class Half:\n"
        "    name = 'half'\n"
        "    config = BackendConfig('half')\n"
        "_: Backend = Half()\n"
    )
    out = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(bad)], cwd=ROOT,
                         capture_output=True, text=True)
    assert out.returncode != 0
    assert 'incompatible type "Half"' in out.stdout or "Incompatible types in assignment" in out.stdout
