"""Loading: MLX logits equal transformers' on the same HF directory (config translation gaps show here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mindprint_interfaces import (
    BackendConfig,
    BackendMismatchError,
    BackendNotFoundError,
    ConfigError,
    create_backend,
)
from mindprint_mlx import MLXBackend
from mindprint_mlx.loading import check_supported, translate_config

pytestmark = pytest.mark.mlx

IDS = [[5, 17, 42, 99, 7, 250, 3, 64, 128, 11, 300, 1], [9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 200, 100]]


def hf_logits(model_dir: Path, ids: list[list[int]]) -> np.ndarray:
    import torch
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    hf.eval()
    with torch.no_grad():
        return hf(torch.tensor(ids)).logits.numpy()


def test_logits_match_transformers(tiny: Any, tiny_model_dir: Path) -> None:
    ours = np.array(tiny.forward(IDS).logits)
    theirs = hf_logits(tiny_model_dir, IDS)
    assert ours.shape == theirs.shape == (2, 12, 384)
    assert np.abs(ours - theirs).max() < 1e-4


def test_plain_mlx_lm_load_would_differ(tiny_model_dir: Path) -> None:
    """Guard for the test above: without our translation mlx-lm drops rope_theta=5000 and the logits move."""
    import mlx.core as mx
    from mlx_lm.utils import load_model

    raw, _ = load_model(tiny_model_dir)
    raw_logits = np.array(raw(mx.array(IDS)).astype(mx.float32))
    assert np.abs(raw_logits - hf_logits(tiny_model_dir, IDS)).max() > 1e-3


def test_translate_config_transformers5_rope() -> None:
    cfg = {"model_type": "llama", "rope_parameters": {"rope_theta": 5000.0, "rope_type": "default"}}
    assert translate_config(cfg) == {"rope_theta": 5000.0}
    scaled = {"rope_parameters": {"rope_theta": 5e5, "rope_type": "llama3", "factor": 8.0,
                                  "original_max_position_embeddings": 8192}}
    out = translate_config(scaled)
    assert out["rope_theta"] == 5e5
    assert out["rope_scaling"] == {"rope_type": "llama3", "factor": 8.0, "original_max_position_embeddings": 8192}
    assert translate_config({"rope_theta": 123.0}) == {"rope_theta": 123.0}


def test_unsupported_maths_field_is_refused() -> None:
    cfg = {"model_type": "llama", "hidden_size": 8, "num_hidden_layers": 1, "intermediate_size": 8,
           "num_attention_heads": 2, "rms_norm_eps": 1e-5, "vocab_size": 10, "hidden_act": "gelu"}
    with pytest.raises(ConfigError, match="hidden_act='gelu'"):
        check_supported(cfg, {})


def test_missing_directory_is_an_error_not_a_hub_download(backend: MLXBackend, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        backend.load_model(tmp_path / "does-not-exist")
    with pytest.raises(ConfigError, match="config.json missing"):
        backend.load_model(tmp_path)


def test_model_properties(tiny: Any) -> None:
    assert tiny.backend_name == "mlx"
    assert tiny.device == "cpu" and tiny.dtype == "float32"
    assert tiny.num_layers == 2
    assert not tiny.has_adapter()
    assert tiny.tokenizer.has_chat_template


def test_registry_creates_mlx_backend() -> None:
    backend = create_backend("mlx", device="cpu")
    assert isinstance(backend, MLXBackend)
    assert backend.device_manager.device == "cpu"
    assert backend.device_manager.dtype == "float32"


def test_backend_mismatch_message(backend: MLXBackend) -> None:
    class PyTorchModel:  # stands in for mindprint_torch's model class: only its name matters here
        pass

    with pytest.raises(BackendMismatchError, match="^Expected MLXModel, got PyTorchModel$"):
        backend.create_sft_trainer(PyTorchModel(), {})  # type: ignore[arg-type]
    with pytest.raises(BackendMismatchError, match="Expected MLXModel, got PyTorchModel"):
        backend.adapter_manager.save(PyTorchModel(), "x")  # type: ignore[arg-type]


def test_mlx_lm_missing_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mlx_lm", None)  # hides the installed module: `import mlx_lm` fails
    with pytest.raises(BackendNotFoundError, match="^mlx-lm not installed: pip install mindprint-mlx"):
        MLXBackend(BackendConfig("mlx"))


def test_package_imports_without_mlx() -> None:
    code = (
        "import sys\n"
        "for name in ('mlx', 'mlx.core', 'mlx_lm'): sys.modules[name] = None\n"
        "import mindprint_mlx\n"
        "from mindprint_interfaces import create_backend, BackendNotFoundError\n"
        "try:\n"
        "    create_backend('mlx')\n"
        "except BackendNotFoundError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("mlx-lm not installed: pip install mindprint-mlx")
