"""Verified merges check every written tensor, on both backends (#20).

An untied model: a corrupted embedding row of a token the logits probe never feeds changes no probe
logit, so only the tensor-by-tensor check can catch it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from mindprint_interfaces import AdapterConfig, MergeVerificationError, create_backend

BACKENDS = [pytest.param("pytorch", marks=pytest.mark.torch), pytest.param("mlx", marks=pytest.mark.mlx)]


@pytest.fixture(scope="module")
def untied_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tiny_model import build_tiny_llama
    return build_tiny_llama(tmp_path_factory.mktemp("untied"), tie_word_embeddings=False)


def _unused_token(backend_name: str, model: object, vocab: int) -> int:
    """The highest token id the backend's logits probe never feeds."""
    if backend_name == "pytorch":
        from mindprint_torch.merge import probe_batch as torch_probe
        used = set(torch_probe(model)[0].flatten().tolist())  # type: ignore[arg-type]
    else:
        from mindprint_mlx.merge import probe_batch as mlx_probe
        used = {t for row in mlx_probe(model) for t in row}  # type: ignore[arg-type]
    return max(t for t in range(vocab) if t not in used)


def _adapted(backend_name: str, model_dir: Path) -> object:
    from mindprint_kit.adapter_files import write_adapter
    backend = create_backend(backend_name, device="cpu", dtype="float32", seed=0)
    import json
    cfg = json.loads((model_dir / "config.json").read_text())
    hidden = cfg["hidden_size"]
    rng = np.random.default_rng(1)
    weights = {(layer, "self_attn.q_proj"): (rng.normal(0, 0.1, (4, hidden)).astype(np.float32),
                                             rng.normal(0, 0.1, (hidden, 4)).astype(np.float32))
               for layer in range(cfg["num_hidden_layers"])}
    adapter = write_adapter(model_dir.parent / f"adapter-{backend_name}", AdapterConfig(r=4, alpha=8,
                                                                                      target_modules=("q_proj",)),
                            weights)
    return backend.load_model(model_dir, adapter_path=adapter)


def _save(backend_name: str, model: object, target: Path, corrupt: object) -> Path:
    if backend_name == "pytorch":
        from mindprint_torch import save_merged as torch_save
        return torch_save(model, target, _after_write=corrupt)  # type: ignore[arg-type]
    from mindprint_mlx.merge import save_merged as mlx_save
    return mlx_save(model, target, _after_write=corrupt)  # type: ignore[arg-type]


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_a_corrupted_embedding_row_outside_the_probe_fails(backend_name: str, untied_dir: Path,
                                                           tmp_path: Path) -> None:
    model = _adapted(backend_name, untied_dir)
    import json
    token = _unused_token(backend_name, model, json.loads((untied_dir / "config.json").read_text())["vocab_size"])

    def corrupt(directory: Path) -> None:
        file = directory / "model.safetensors"
        weights = load_file(str(file))
        key = next(k for k in weights if k.endswith("embed_tokens.weight"))
        weights[key] = weights[key].copy()
        weights[key][token] += 1.0
        save_file(weights, str(file), metadata={"format": "pt"})

    with pytest.raises(MergeVerificationError, match=rf"embed_tokens.weight: differs from base .* at \({token}, "):
        _save(backend_name, model, tmp_path / "bad", corrupt)
    assert not (tmp_path / "bad").exists()
    out = _save(backend_name, model, tmp_path / "good", None)  # the same merge, uncorrupted, passes
    assert (out / "model.safetensors").is_file()
