"""Hub ids on both backends from a local Hugging Face cache (HF_HUB_CACHE layout), offline, never downloading.

The cache holds a tiny random Qwen2 under ``Qwen/Qwen2.5-7B-Instruct`` whose config.json has the keys the real
Qwen2.5-7B-Instruct config.json has on the Hub (top-level rope_theta, ``sliding_window: 131072`` with
``use_sliding_window: false``, untied head), with the dimensions shrunk.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from mindprint_interfaces import Backend, ConfigError, create_backend
from mindprint_interfaces.errors import MindprintError
from mindprint_kit.model_source import resolve_source

pytestmark = [pytest.mark.torch, pytest.mark.mlx]

REPO = "Qwen/Qwen2.5-7B-Instruct"
COMMIT = "a09a35458c702b33eeacc393d103063234e8bc28"
# The Hub's Qwen2.5-7B-Instruct config.json, dimensions (and token ids, to fit the tiny vocabulary) shrunk.
QWEN25_CONFIG = {
    "architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 1, "eos_token_id": 2,
    "hidden_act": "silu", "hidden_size": 64, "initializer_range": 0.02, "intermediate_size": 128,
    "max_position_embeddings": 512, "max_window_layers": 28, "model_type": "qwen2", "num_attention_heads": 4,
    "num_hidden_layers": 2, "num_key_value_heads": 2, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
    "sliding_window": 131072, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
    "transformers_version": "4.43.1", "use_cache": True, "use_sliding_window": False, "vocab_size": 384,
}


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tiny_model import build_tiny_family

    built = build_tiny_family("qwen2", tmp_path_factory.mktemp("qwen25-build"),
                              config_overrides={"tie_word_embeddings": False})
    cache = tmp_path_factory.mktemp("hf-cache")
    repo = cache / f"models--{REPO.replace('/', '--')}"
    snapshot = repo / "snapshots" / COMMIT
    shutil.copytree(built, snapshot, ignore=shutil.ignore_patterns(".tiny-model.json"))
    (snapshot / "config.json").write_text(json.dumps(QWEN25_CONFIG, indent=2))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    return cache


@pytest.fixture()
def offline(monkeypatch: pytest.MonkeyPatch, hub_cache: Path) -> Path:
    monkeypatch.setenv("HF_HUB_CACHE", str(hub_cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return hub_cache


def _backend(name: str) -> Backend:
    try:
        return create_backend(name, device="cpu", dtype="float32", seed=0)
    except MindprintError as exc:
        pytest.skip(f"{name} backend unavailable: {exc}")


def test_resolves_to_the_snapshot(offline: Path) -> None:
    snapshot = offline / "models--Qwen--Qwen2.5-7B-Instruct" / "snapshots" / COMMIT
    assert resolve_source(REPO) == snapshot
    assert resolve_source(REPO, revision=COMMIT) == snapshot
    with pytest.raises(ConfigError, match=r"Qwen/Qwen2.5-7B-Instruct@v9 is not in the local Hugging Face cache"):
        resolve_source(REPO, revision="v9")
    with pytest.raises(ConfigError, match=r"Org/Missing is not in the local Hugging Face cache .*downloads are off"):
        resolve_source("Org/Missing")


def test_download_can_be_forbidden_while_online(monkeypatch: pytest.MonkeyPatch, hub_cache: Path) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(hub_cache))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("MINDPRINT_ALLOW_DOWNLOAD", "0")
    assert resolve_source(REPO).name == COMMIT  # cached: no network needed
    with pytest.raises(ConfigError, match="Org/Missing is not in the local Hugging Face cache"):
        resolve_source("Org/Missing")
    monkeypatch.delenv("MINDPRINT_ALLOW_DOWNLOAD")
    with pytest.raises(ConfigError, match="downloads are off"):
        resolve_source("Org/Missing", allow_download=False)


def test_paths_are_not_hub_ids(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_source(tmp_path / "nope")
    with pytest.raises(ConfigError, match="revision"):
        resolve_source(tmp_path, revision="main")


def test_load_model_by_hub_id_on_both_backends(offline: Path) -> None:
    torch_model = _backend("pytorch").load_model(REPO, tokenizer_path=REPO)
    mlx_model = _backend("mlx").load_model(REPO, revision=COMMIT)
    ids = torch_model.tokenizer.encode("The capital of France is Paris. The capital of Italy is Rome.")
    assert ids == mlx_model.tokenizer.encode("The capital of France is Paris. The capital of Italy is Rome.")
    a, b = np.array(torch_model.next_token_logprobs(ids)), np.array(mlx_model.next_token_logprobs(ids))
    assert np.abs(a - b).max() < 1e-4


def test_cli_passes_hub_ids_to_the_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mindprint_trainer.bundled_model import ModelUnavailableError, resolve_model_path

    monkeypatch.chdir(tmp_path)
    assert resolve_model_path(REPO) == Path(REPO)
    with pytest.raises(ModelUnavailableError, match="does not exist"):
        resolve_model_path("./no/such/dir")
