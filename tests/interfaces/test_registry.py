"""Backend registry: lazy registration, install hints, selection order."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from mindprint_interfaces import (
    BackendConfig,
    BackendNotFoundError,
    BackendRegistry,
    BackendSpec,
    ConfigError,
    create_backend,
)
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


def test_registration_modules_import_no_ml_library() -> None:
    """The shipped entry points name light specs: reading them and building a launch command imports no ML library."""
    code = (
        "import sys; from mindprint_interfaces import BackendRegistry, BackendSpec;"
        "specs=[BackendRegistry.spec(n) for n in ('pytorch','mlx')];"
        "assert all(isinstance(s, BackendSpec) for s in specs);"
        "[s.launch_command(2, [sys.executable, '-m', 'x']) for s in specs];"
        "bad=[m for m in ('torch','mlx','mlx.core','transformers','numpy','peft','trl') if m in sys.modules];"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_shipped_specs_launchers_and_ranks() -> None:
    torch_spec, mlx_spec = BackendRegistry.spec("torch"), BackendRegistry.spec("mlx")
    inner = [sys.executable, "-m", "mindprint_trainer", "sft"]
    assert torch_spec.launch_command(4, inner) == [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "4", "-m", "mindprint_trainer",
        "sft"]
    mlx_cmd = mlx_spec.launch_command(4, inner)
    assert mlx_cmd[-9:] == ["-n", "4", "--backend", "ring", "--", *inner]
    assert torch_spec.rank({"WORLD_SIZE": "2", "RANK": "1"}) == 1 and torch_spec.launched({"WORLD_SIZE": "2"})
    assert mlx_spec.rank({"MLX_RANK": "1"}) == 1 and mlx_spec.launched({"MLX_RANK": "0"})
    assert not mlx_spec.launched({"WORLD_SIZE": "2"}) and mlx_spec.rank({}) is None
    assert "mindprint-torch" in torch_spec.distributions and "mlx-lm" in mlx_spec.distributions


def test_lazy_path_to_a_spec_or_a_factory() -> None:
    """An entry point (or register) may name a spec or, as before, a plain factory; both resolve lazily."""
    BackendRegistry.register("lazyspec", f"{__name__}:LAZY_SPEC")
    BackendRegistry.register("lazyfactory", f"{__name__}:_FakeBackend")
    try:
        assert BackendRegistry.spec("lazyspec") is LAZY_SPEC
        plain = BackendRegistry.spec("lazyfactory")
        assert plain.factory is _FakeBackend and not plain.has_launcher and not plain.has_converter
        backend = create_backend("lazyspec", device="cpu")
        assert isinstance(backend, _FakeBackend) and backend.config.backend_type == "lazyspec"
        with pytest.raises(ConfigError, match="the lazyfactory backend provides no data-parallel launcher"):
            plain.launch_command(2, [sys.executable])
    finally:
        BackendRegistry.unregister("lazyspec")
        BackendRegistry.unregister("lazyfactory")


def test_spec_of_unregistered_name_keeps_the_message() -> None:
    with pytest.raises(BackendNotFoundError) as info:
        BackendRegistry.spec("tensorflow")
    assert str(info.value).startswith("Unknown backend: tensorflow")


LAZY_SPEC = BackendSpec(name="lazyspec", factory=_FakeBackend)  # type: ignore[arg-type]


def test_entry_points_load_once_for_every_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """Threads asking at once all see every installed backend (no half-filled table while another thread loads)."""
    import threading
    import time
    from importlib import metadata

    from mindprint_interfaces import registry

    real = metadata.entry_points

    def slow_entry_points(**kwargs: Any) -> Any:
        found = real(**kwargs)
        time.sleep(0.05)  # widen the window a racing reader would fall into
        return found

    expected = sorted({registry.canonical_name(ep.name) for ep in real(group=registry.ENTRY_POINT_GROUP)})
    assert expected, "no backend entry point installed"
    monkeypatch.setattr(registry.metadata, "entry_points", slow_entry_points)
    monkeypatch.setattr(BackendRegistry, "_factories", {})
    monkeypatch.setattr(BackendRegistry, "_entry_points_loaded", False)
    seen: list[list[str]] = []
    threads = [threading.Thread(target=lambda: seen.append(BackendRegistry.available())) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == [expected] * 4
