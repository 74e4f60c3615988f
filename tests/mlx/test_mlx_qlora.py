"""QLoRA on MLX: LoRA on mlx-lm quantized bases (a ``mlx_lm.convert -q`` directory, or quantized on load),
SFT -> DPO -> save -> reload -> keep training -> verified merge (dequantized, optionally re-quantized)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import pytest

from mindprint_interfaces import ConfigError
from mindprint_mlx import MLXBackend

pytestmark = pytest.mark.mlx

IDS = [[5, 17, 40, 99, 3, 200, 31, 7], [11, 250, 64, 2, 90, 120, 8, 44]]


def max_diff(a: Any, b: Any) -> float:
    return float(mx.max(mx.abs(a.logits(mx.array(IDS)) - b.logits(mx.array(IDS)))))


@pytest.fixture(scope="module")
def converted_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-bit group-32 directory written by mlx-lm's own converter (``mlx_lm.convert -q``)."""
    from mlx_lm import convert

    out = tmp_path_factory.mktemp("q4") / "tiny-q4"
    convert(str(tiny_model_dir), str(out), quantize=True, q_bits=4, q_group_size=32)
    return out


def quantized_linears(model: Any) -> int:
    return sum(isinstance(m, nn.QuantizedLinear) for _, m in model.module.named_modules())


def test_converted_directory_and_quantize_on_load_agree(backend: MLXBackend, tiny_model_dir: Path,
                                                        converted_dir: Path) -> None:
    full = backend.load_model(tiny_model_dir)
    from_dir = backend.load_model(converted_dir)
    on_load = backend.load_model(tiny_model_dir, quantization={"bits": 4, "group_size": 32})
    assert quantized_linears(from_dir) > 0 and quantized_linears(on_load) == quantized_linears(from_dir)
    assert from_dir.quantization is not None and from_dir.quantization.label == "4-bit affine (group 32)"
    assert max_diff(from_dir, on_load) == 0.0
    q4 = max_diff(full, from_dir)
    q8 = max_diff(full, backend.load_model(tiny_model_dir, quantization={"bits": 8, "group_size": 32}))
    assert q4 > 1e-2  # the quantization matters on this model ...
    assert 0 < q8 < q4 / 4  # ... and 8 bits are closer to full precision than 4


def test_qlora_sft_dpo_save_reload_continue_merge(backend: MLXBackend, converted_dir: Path, tmp_path: Path,
                                                  sft_records: list[dict[str, Any]],
                                                  preference_records: list[dict[str, Any]]) -> None:
    model = backend.load_model(converted_dir)
    base = backend.load_model(converted_dir)
    sft = backend.create_trainer("sft", model, {"max_steps": 4, "learning_rate": 1e-2, "per_device_batch_size": 2,
                                                "output_dir": str(tmp_path / "o")})
    res = sft.train(sft_records, adapter_dir=tmp_path / "sft")
    assert res.success, res.error_message
    losses = [h["loss"] for h in res.metrics["history"]]
    assert losses[-1] < losses[0]
    dpo = backend.create_trainer("dpo", model, {"max_steps": 3, "learning_rate": 5e-3, "per_device_batch_size": 2,
                                                "output_dir": str(tmp_path / "o")})
    res = dpo.train(preference_records, adapter_dir=tmp_path / "dpo")
    assert res.success, res.error_message
    assert max_diff(model, base) > 1e-3  # the adapter moved the quantized model

    reloaded = backend.load_model(converted_dir, adapter_path=tmp_path / "dpo")  # the packed weights' logical dims
    assert max_diff(reloaded, model) < 1e-5
    more = backend.create_trainer("sft", reloaded, {"max_steps": 2, "learning_rate": 1e-2, "per_device_batch_size": 2,
                                                    "output_dir": str(tmp_path / "o")})
    assert more.train(sft_records, adapter_dir=tmp_path / "more").success
    assert max_diff(reloaded, model) > 1e-4  # kept training on the quantized base

    merged_dir = model.save_pretrained(tmp_path / "merged")  # dequantized + merged, verified inside
    merged = backend.load_model(merged_dir)
    assert merged.quantization is None and quantized_linears(merged) == 0
    assert max_diff(merged, model) < 1e-4
    requantized = backend.load_model(model.save_pretrained(tmp_path / "merged-q4", quantization={"bits": 4,
                                                                                                "group_size": 32}))
    assert requantized.quantization is not None and quantized_linears(requantized) > 0
    assert 1e-4 < max_diff(requantized, model) < max_diff(base, model) * 4  # the re-quantization error only


def test_backend_specific_fields_are_refused_by_name(backend: MLXBackend, tiny_model_dir: Path,
                                                     converted_dir: Path) -> None:
    with pytest.raises(ConfigError, match="quantization.mode") as err:
        backend.load_model(tiny_model_dir, quantization={"bits": 4, "mode": "nf4"})
    assert err.value.key == "quantization.mode"
    with pytest.raises(ConfigError, match="quantization.group_size"):
        backend.load_model(tiny_model_dir, quantization={"bits": 4, "group_size": 48})
    with pytest.raises(ConfigError, match="quantization.double_quant"):
        backend.load_model(tiny_model_dir, quantization={"bits": 4, "double_quant": True})
    with pytest.raises(ConfigError, match="already quantized"):
        backend.load_model(converted_dir, quantization={"bits": 8})
    with pytest.raises(ConfigError, match="quantization.bits"):
        backend.load_model(tiny_model_dir, quantization={"bits": 3})
