"""Backend registry: lazy registration, install hints, selection order."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from mindprint_interfaces import BackendConfig, BackendNotFoundError, BackendRegistry, ConfigError, create_backend
from mindprint_interfaces.registry import ENV_VAR, KNOWN_BACKENDS, resolve_backend_name


class _FakeBackend:
    """A registered factory; the registry only needs a callable(BackendConfig)."""

    def __init__(self, config: BackendConfig) -> None:
        self.config = config
        self.name = "fake"


@pytest.fixture
def fake_registered() -> Iterator[None]:
    BackendRegistry.register("fake", _FakeBackend)  # type: ignore[arg-type]
    yield
    BackendRegistry.unregister("fake")


def test_unknown_backend_lists_known_ones() -> None:
    with pytest.raises(BackendNotFoundError) as info:
        create_backend("tensorflow")
    msg = str(info.value)
    assert msg.startswith("Unknown backend: tensorflow")
    for name in ("pytorch", "mlx"):
        assert name in msg


def test_entry_points_register_both_backends() -> None:
    assert {"pytorch", "mlx"} <= set(BackendRegistry.available())


def test_known_but_missing_backend_names_package(monkeypatch: pytest.MonkeyPatch) -> None:
    # Simulate a host without mindprint-mlx: drop its registration.
    BackendRegistry.available()
    saved = BackendRegistry._factories.pop("mlx")
    try:
        with pytest.raises(BackendNotFoundError) as info:
            create_backend("mlx")
        msg = str(info.value)
        assert msg.startswith("Unknown backend: mlx")
        assert "mindprint-mlx" in msg and "pip install" in msg
    finally:
        BackendRegistry._factories["mlx"] = saved


def test_explicit_registration_and_alias(fake_registered: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    backend = create_backend("FAKE", device="cpu", seed=3)
    assert isinstance(backend, _FakeBackend)
    assert backend.config.backend_type == "fake"
    assert backend.config.device == "cpu" and backend.config.seed == 3


def test_selection_order_argument_env_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, "mlx")
    assert resolve_backend_name("torch", "pytorch") == "pytorch"
    assert resolve_backend_name(None, "pytorch") == "mlx"
    monkeypatch.delenv(ENV_VAR)
    assert resolve_backend_name(None, "torch") == "pytorch"
    assert resolve_backend_name(None, None) is None


def test_no_silent_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    with pytest.raises(ConfigError, match="no backend chosen"):
        create_backend()


def test_bad_device_is_a_config_error(fake_registered: None) -> None:
    with pytest.raises(ConfigError) as info:
        create_backend("fake", device="tpu")
    assert info.value.key == "device"


def test_known_backends_have_hints() -> None:
    assert KNOWN_BACKENDS["mlx"].distribution == "mindprint-mlx"
    assert "mindprint-trainer[torch]" in KNOWN_BACKENDS["pytorch"].install_hint


def test_import_pulls_no_ml_library() -> None:
    code = (
        "import sys, mindprint_interfaces, mindprint_interfaces.data, mindprint_interfaces.registry;"
        "mindprint_interfaces.BackendRegistry.available();"
        "bad=[m for m in ('torch','mlx','transformers','numpy','peft','trl') if m in sys.modules];"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
