"""Where a model (or tokenizer) comes from: a local directory / file, or a Hugging Face Hub id via its local cache.

``resolve_source("Qwen/Qwen2.5-7B-Instruct", revision=None)`` returns the snapshot directory of the local
Hugging Face cache (``HF_HUB_CACHE``, or ``HF_HOME/hub``; ``refs/<revision>`` -> ``snapshots/<commit>``) through
``huggingface_hub.snapshot_download(..., local_files_only=True)``. When the id is not cached, it is downloaded
through ``huggingface_hub`` as transformers and mlx-lm do, unless downloads are off: ``HF_HUB_OFFLINE=1``,
``MINDPRINT_ALLOW_DOWNLOAD=0``, or ``allow_download=False`` (the backends pass their
``BackendConfig.options["allow_download"]``). Both backends resolve through this one function.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from mindprint_interfaces import ConfigError

ALLOW_DOWNLOAD_ENV = "MINDPRINT_ALLOW_DOWNLOAD"
# What loading a causal LM needs (no other weight formats, no pickles).
DOWNLOAD_PATTERNS = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.tiktoken", "tokenizer*"]


def downloads_allowed(allow_download: bool | None = None) -> bool:
    """Whether a missing Hub id may be fetched: the argument, else ``MINDPRINT_ALLOW_DOWNLOAD``, and never offline."""
    from huggingface_hub import is_offline_mode

    if is_offline_mode() or os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE"):
        return False
    if allow_download is not None:
        return allow_download
    return os.environ.get(ALLOW_DOWNLOAD_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def hub_cache() -> Path:
    """The Hugging Face cache directory as the environment says now: ``HF_HUB_CACHE``, else ``HF_HOME/hub``."""
    from huggingface_hub import constants

    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    return Path(constants.HF_HUB_CACHE)


_REPO_PART = re.compile(r"^[A-Za-z0-9_.\-]{1,96}$")


def is_hub_id(name: str) -> bool:
    """``org/name`` or ``name`` as the Hub spells repository ids (not a path: no leading ``/``, ``.`` or ``~``)."""
    if not name or name[0] in "/.~" or "\\" in name or name.count("/") > 1:
        return False
    return all(_REPO_PART.match(part) and "--" not in part and ".." not in part
               and part[0] not in "-." and part[-1] not in "-." for part in name.split("/"))


def resolve_source(source: str | os.PathLike[str], *, revision: str | None = None, key: str = "model_path",
                   allow_download: bool | None = None) -> Path:
    """A local path as it is (when it exists), else the local snapshot of a Hub id (downloaded when allowed)."""
    path = Path(source).expanduser()
    from .bundled import bundled_model_dir, is_bundled_name

    if not path.exists() and revision is None and is_bundled_name(str(source)):
        return bundled_model_dir(str(source), key=key)  # "smollm2", as the mindprint command accepts it
    if path.exists():
        if revision is not None:
            raise ConfigError(f"{key}: revision={revision!r} given for the local path {path}", key=key)
        return path
    name = str(source)
    if not is_hub_id(name):
        raise ConfigError(f"{key}: {path} does not exist (not found, and not a Hugging Face Hub id)", key=key)
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    cache = hub_cache()
    try:
        return Path(str(snapshot_download(name, revision=revision, cache_dir=cache, local_files_only=True)))
    except LocalEntryNotFoundError:
        pass
    where = f"{name}" + (f"@{revision}" if revision else "")
    if not downloads_allowed(allow_download):
        raise ConfigError(
            f"{key}: {where} is not in the local Hugging Face cache ({cache}) and downloads are off "
            f"(HF_HUB_OFFLINE, {ALLOW_DOWNLOAD_ENV}=0 or allow_download=False); not found", key=key)
    try:
        return Path(str(snapshot_download(name, revision=revision, cache_dir=cache, allow_patterns=DOWNLOAD_PATTERNS)))
    except Exception as exc:  # network, authentication, unknown repository: one clear error
        raise ConfigError(f"{key}: cannot download {where} from the Hugging Face Hub: {exc}", key=key) from exc
