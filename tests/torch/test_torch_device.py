from __future__ import annotations

import pytest
import torch

from mindprint_interfaces import Backend, BackendConfig, DeviceUnavailableError, create_backend
from mindprint_torch import TorchBackend, TorchDeviceManager

pytestmark = pytest.mark.torch


def test_create_backend_goes_through_the_registry() -> None:
    backend = create_backend("pytorch", device="cpu", dtype="float32")
    assert isinstance(backend, TorchBackend)
    assert isinstance(backend, Backend)
    assert backend.name == "pytorch"
    assert backend.device_manager.device == "cpu" and backend.device_manager.dtype == "float32"


def test_auto_resolves_to_the_best_available_device() -> None:
    dm = TorchDeviceManager("auto", "auto")
    expected = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert dm.device == expected
    if expected == "cpu":
        assert dm.dtype == "float32"


@pytest.mark.skipif(torch.cuda.is_available() or torch.backends.mps.is_available(), reason="needs a machine without GPU")
def test_unavailable_devices_raise_clear_errors() -> None:
    with pytest.raises(DeviceUnavailableError, match="no GPU"):
        TorchDeviceManager("gpu")
    with pytest.raises(DeviceUnavailableError, match="CUDA is not available.*available: cpu"):
        TorchDeviceManager("cuda")
    with pytest.raises(DeviceUnavailableError, match="MPS is not available"):
        create_backend("pytorch", device="mps")


def test_unknown_device_and_dtype() -> None:
    with pytest.raises(DeviceUnavailableError, match="unknown device"):
        TorchDeviceManager("tpu")
    with pytest.raises(DeviceUnavailableError, match="unsupported dtype"):
        TorchDeviceManager("cpu", "int8")
    with pytest.raises(DeviceUnavailableError, match="MLX"):
        TorchDeviceManager("metal")


def test_explicit_dtypes_on_cpu() -> None:
    assert TorchDeviceManager("cpu", "bf16").torch_dtype == torch.bfloat16
    assert TorchDeviceManager("cpu", "float16").dtype == "float16"


def test_memory_info_reports_rss_on_cpu() -> None:
    info = TorchDeviceManager("cpu").memory_info()
    assert info["used"] > 10_000_000 and info["peak"] >= info["used"] * 0.5
    assert "cpu" in TorchDeviceManager("cpu").available_devices()


def test_backend_accepts_a_mapping_config() -> None:
    backend = TorchBackend({"backend_type": "pytorch", "device": "cpu"})
    assert backend.config == BackendConfig("pytorch", device="cpu")
