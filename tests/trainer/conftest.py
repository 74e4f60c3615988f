"""Fixtures of the trainer tests (defined in helpers.py, next to the subprocess runner)."""

from tests.trainer.helpers import run_cli  # noqa: F401 (a fixture: the CLI in-process)
