"""Adapters record the base they were trained on; loading onto another base is an error naming what differs (#20)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mindprint_interfaces import AdapterConfig, AdapterFormatError, create_backend
from mindprint_kit.adapter_files import ALLOW_OTHER_BASE_ENV, BASE_KEY

BACKENDS = ["pytorch", "mlx"]


@pytest.fixture(scope="module")
def bases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from tiny_model import build_tiny_llama
    root = tmp_path_factory.mktemp("bases")
    return {"a": build_tiny_llama(root / "a", seed=0), "b": build_tiny_llama(root / "b", seed=1),
            "deep": build_tiny_llama(root / "deep", seed=0, num_layers=3)}


def _saved_adapter(backend_name: str, base: Path, out: Path) -> Path:
    backend = create_backend(backend_name, device="cpu", dtype="float32", seed=0)
    model = backend.load_model(base)
    config = AdapterConfig(r=4, alpha=8, target_modules=("q_proj", "v_proj"))
    if backend_name == "pytorch":
        from mindprint_torch.adapters import add_adapter
        add_adapter(model, config, seed=0)  # type: ignore[arg-type]
    else:
        model.add_adapter(config, seed=0)  # type: ignore[attr-defined]
    return model.save_adapter(out)


@pytest.mark.torch
@pytest.mark.mlx
@pytest.mark.parametrize("saved_on", BACKENDS)
def test_wrong_base_is_refused_on_both_backends(saved_on: str, bases: dict[str, Path], tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    adapter = _saved_adapter(saved_on, bases["a"], tmp_path / "adapter")
    record = json.loads((adapter / "adapter_config.json").read_text())[BASE_KEY]
    assert record["architecture"] == "llama" and record["num_layers"] == 2
    assert "layers.0.self_attn.q_proj" in record["modules"]
    for backend_name in BACKENDS:
        backend = create_backend(backend_name, device="cpu", dtype="float32", seed=0)
        assert backend.load_model(bases["a"], adapter_path=adapter).has_adapter()  # its own base, either backend
        with pytest.raises(AdapterFormatError, match="trained on another base model: the weights it modifies differ"):
            backend.load_model(bases["b"], adapter_path=adapter)  # same shapes, other weights
        with pytest.raises(AdapterFormatError, match="2 layers \\(trained on\\) vs 3"):
            backend.load_model(bases["deep"], adapter_path=adapter)
        monkeypatch.setenv(ALLOW_OTHER_BASE_ENV, "1")
        assert backend.load_model(bases["b"], adapter_path=adapter).has_adapter()  # the explicit override
        monkeypatch.delenv(ALLOW_OTHER_BASE_ENV)


@pytest.mark.torch
def test_peft_itself_loads_an_adapter_with_the_record(bases: dict[str, Path], tmp_path: Path) -> None:
    import torch
    from peft import PeftConfig, PeftModel
    from transformers import AutoModelForCausalLM

    adapter = _saved_adapter("mlx", bases["a"], tmp_path / "adapter")  # written by the kit's own writer
    assert BASE_KEY in json.loads((adapter / "adapter_config.json").read_text())
    assert PeftConfig.from_pretrained(str(adapter)).r == 4
    base = AutoModelForCausalLM.from_pretrained(str(bases["a"]), dtype=torch.float32)
    model = PeftModel.from_pretrained(base, str(adapter))
    assert any("lora_A" in name for name, _ in model.named_parameters())
