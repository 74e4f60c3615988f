"""What a model directory must hold before a backend loads it: safetensors weights and no remote code.

mindprint never unpickles (``pytorch_model.bin``, ``*.pt`` ...) and never runs a model repository's
own Python code (``auto_map`` + a ``model_type`` the library does not know). Both backends call
:func:`check_model_dir` first, so such a directory is one clear :class:`ConfigError` on either.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from mindprint_interfaces import ConfigError

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


def check_model_dir(path: Path, *, known_model_type: Callable[[str], bool], key: str = "model_path") -> None:
    """Raise ConfigError when ``path`` (an HF model directory) holds only pickle weights or needs remote code."""
    if not path.is_dir():
        return  # a .gguf file, or a missing path: the backend reports those
    config_file = path / "config.json"
    if not config_file.is_file():
        raise ConfigError(f"{key}: {path}: config.json missing (not a Hugging Face model directory)", key=key)
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{key}: {config_file}: not valid JSON ({str(exc)[:120]})", key=key) from None
    if not isinstance(config, dict):
        raise ConfigError(f"{key}: {config_file}: expected a JSON object", key=key)
    model_type = config.get("model_type")
    if config.get("auto_map") and not (isinstance(model_type, str) and known_model_type(model_type)):
        raise ConfigError(f"{key}: {path} needs the model repository's own Python code (auto_map in config.json, "
                          f"model_type {model_type!r} is not built in); mindprint never runs remote code", key=key)
    if not isinstance(model_type, str) or not model_type:
        raise ConfigError(f"{key}: {config_file}: no model_type (not a Hugging Face model config)", key=key)
    files = [f for f in path.iterdir() if f.is_file()]
    weights = [f for f in files if f.name.endswith(".safetensors")]
    if weights or any(f.name.endswith(".safetensors.index.json") for f in files):
        for f in weights:
            _check_safetensors(f, key)
        return
    pickles = sorted(f.name for f in files if f.suffix in PICKLE_SUFFIXES and "tokenizer" not in f.name)
    if pickles:
        raise ConfigError(f"{key}: {path} holds only pickle weights ({', '.join(pickles[:3])}); mindprint loads "
                          "safetensors only (never pickle): convert the weights to model.safetensors", key=key)
    raise ConfigError(f"{key}: {path} holds no model weights (*.safetensors)", key=key)


def _check_safetensors(file: Path, key: str) -> None:
    """The file's safetensors header parses (a truncated or foreign file is named here, not deep in a loader)."""
    from safetensors import safe_open

    try:
        with safe_open(str(file), framework="numpy") as handle:
            handle.keys()
    except Exception as exc:  # safetensors raises its own SafetensorError (and OSError) for unreadable headers
        raise ConfigError(f"{key}: {file}: not a valid safetensors file ({str(exc)[:120]})", key=key) from None


# Any one of these makes a directory a tokenizer transformers / mlx-lm can load without extra packages
# (tokenizer.model is SentencePiece, vocab.json the byte-level BPE of GPT-2 style models, *.tiktoken tiktoken).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt")


def check_tokenizer_dir(path: Path, *, key: str = "tokenizer_path") -> None:
    """Raise ConfigError when the directory ``path`` holds no tokenizer files (instead of the library's long error)."""
    if not path.is_dir():
        return  # a .gguf file carries its tokenizer; a missing path is resolve_source's error
    names = {f.name for f in path.iterdir() if f.is_file()}
    if names & set(TOKENIZER_FILES) or any(name.endswith(".tiktoken") for name in names):
        return
    raise ConfigError(f"{key}: {path}: no tokenizer ({', '.join(TOKENIZER_FILES)} or *.tiktoken missing); pass "
                      "the tokenizer's directory as tokenizer_path or copy its files next to the model", key=key)
