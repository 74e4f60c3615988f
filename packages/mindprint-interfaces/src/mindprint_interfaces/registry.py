"""Backend registry: name -> lazy backend spec, with install hints for backends that are not installed.

Backends register themselves through the ``mindprint.backends`` entry-point group (so a host
installs only the backend it needs), or explicitly with :meth:`BackendRegistry.register`. A
registration is a :class:`~mindprint_interfaces.backend_spec.BackendSpec` (factory, launcher,
adapter converter, rank variables, required distributions) or, as before, a plain factory, which
becomes a spec without those capabilities. Nothing is imported until a backend is asked for.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from .backend_spec import BackendFactory, BackendSpec, load_object
from .configs import BackendConfig
from .errors import BackendNotFoundError, ConfigError
from .protocols import Backend
from .validation import suggest

ENTRY_POINT_GROUP = "mindprint.backends"
_ENTRY_POINTS_LOCK = threading.Lock()
ENV_VAR = "MINDPRINT_BACKEND"

__all__ = ["ALIASES", "ENTRY_POINT_GROUP", "ENV_VAR", "KNOWN_BACKENDS", "BackendFactory", "BackendRegistry",
           "BackendSpec", "KnownBackend", "canonical_name", "create_backend", "resolve_backend_name"]


@dataclass(frozen=True)
class KnownBackend:
    """A backend mindprint knows about even when it is not installed."""

    name: str
    distribution: str
    extra: str
    description: str

    @property
    def install_hint(self) -> str:
        return f"pip install {self.distribution}  (or: pip install 'mindprint-trainer[{self.extra}]')"


KNOWN_BACKENDS: Mapping[str, KnownBackend] = {
    "pytorch": KnownBackend("pytorch", "mindprint-torch", "torch", "PyTorch + transformers + PEFT + TRL (CUDA, MPS, CPU)"),
    "mlx": KnownBackend("mlx", "mindprint-mlx", "mlx", "MLX + mlx-lm (Apple silicon; CPU on Linux)"),
}

ALIASES: Mapping[str, str] = {"torch": "pytorch", "pt": "pytorch", "mlx-lm": "mlx", "mlx_lm": "mlx"}


def canonical_name(name: str) -> str:
    key = name.strip().lower()
    return ALIASES.get(key, key)


class BackendRegistry:
    """Process-wide registry. Explicit registrations win over entry points of the same name."""

    # name -> BackendSpec, a plain factory, or a lazy "module:attr" path to either (resolved on first use)
    _factories: dict[str, BackendSpec | BackendFactory | str] = {}
    _entry_points_loaded: bool = False

    @classmethod
    def register(cls, name: str, factory: BackendSpec | BackendFactory | str) -> None:
        """Register a :class:`BackendSpec`, a factory, or a lazy ``"module:attr"`` path to either under ``name``."""
        cls._factories[canonical_name(name)] = factory

    @classmethod
    def unregister(cls, name: str) -> None:
        cls._factories.pop(canonical_name(name), None)

    @classmethod
    def _load_entry_points(cls) -> None:
        # Under a lock, the flag set only once every entry point is in: a second thread asking meanwhile waits
        # instead of seeing a half-filled table (the benchmark checks jobs from two threads at once).
        if cls._entry_points_loaded:
            return
        with _ENTRY_POINTS_LOCK:
            if cls._entry_points_loaded:
                return
            for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
                cls._factories.setdefault(canonical_name(ep.name), ep.value)
            cls._entry_points_loaded = True

    @classmethod
    def available(cls) -> list[str]:
        """Names of registered backends, sorted (installed packages; their libraries are checked on create)."""
        cls._load_entry_points()
        return sorted(cls._factories)

    @classmethod
    def preference_order(cls) -> list[str]:
        """Registered backends, the known ones first in :data:`KNOWN_BACKENDS` order: the order a default is taken in."""
        available = cls.available()
        return [n for n in KNOWN_BACKENDS if n in available] + [n for n in available if n not in KNOWN_BACKENDS]

    @classmethod
    def _not_found(cls, name: str) -> BackendNotFoundError:
        known = sorted(set(cls._factories) | set(KNOWN_BACKENDS))
        msg = f"Unknown backend: {name}. Known backends: {', '.join(known)}"
        if name in KNOWN_BACKENDS:
            kb = KNOWN_BACKENDS[name]
            msg = (f"Unknown backend: {name} is not installed. Known backends: {', '.join(known)}. "
                   f"It is provided by the package {kb.distribution}: {kb.install_hint}")
        else:
            msg += suggest(name, known)
        return BackendNotFoundError(msg)

    @classmethod
    def spec(cls, name: str) -> BackendSpec:
        """The spec registered under ``name`` (a plain factory is wrapped in a spec without capabilities).

        Imports only the registered module (a backend's light registration module), not the backend.
        """
        name = canonical_name(name)
        cls._load_entry_points()
        target = cls._factories.get(name)
        if target is None:
            raise cls._not_found(name)
        if isinstance(target, BackendSpec):
            return target
        loaded = load_object(target) if isinstance(target, str) else target
        spec = loaded if isinstance(loaded, BackendSpec) else BackendSpec(name=name, factory=loaded)
        cls._factories[name] = spec
        return spec

    @classmethod
    def specs(cls) -> list[BackendSpec]:
        """The specs of every registered backend whose registration module imports (in preference order)."""
        out: list[BackendSpec] = []
        for name in cls.preference_order():
            try:
                out.append(cls.spec(name))
            except ImportError:  # a broken third-party registration must not break the other backends
                continue
        return out

    @classmethod
    def _resolve_factory(cls, name: str) -> BackendFactory:
        return cls.spec(name).load_factory()

    @classmethod
    def create(cls, config: BackendConfig, **options: Any) -> Backend:
        if config.backend_type is None:
            raise ConfigError(
                "no backend chosen: pass a backend name, set MINDPRINT_BACKEND, or set backend.type in the config file "
                f"(installed: {', '.join(cls.available()) or 'none'})",
                key="backend.type",
            )
        name = canonical_name(config.backend_type)
        factory = cls._resolve_factory(name)
        if name != config.backend_type or options:
            config = BackendConfig(
                backend_type=name, device=config.device, dtype=config.dtype, seed=config.seed,
                options={**config.options, **options},
            )
        return factory(config)


def resolve_backend_name(argument: str | None = None, config_value: str | None = None,
                         env: Mapping[str, str] | None = None) -> str | None:
    """Selection order: explicit argument > MINDPRINT_BACKEND > config file. None when none is set."""
    env = os.environ if env is None else env
    for candidate in (argument, env.get(ENV_VAR), config_value):
        if candidate:
            return canonical_name(candidate)
    return None


def create_backend(name: str | None = None, *, device: str = "auto", dtype: str = "auto", seed: int = 42,
                   config_value: str | None = None, **options: Any) -> Backend:
    """Create a backend by name (any registered one: ``"pytorch"``/``"torch"``, ``"mlx"``, a third party's).

    ``name`` wins over ``MINDPRINT_BACKEND``, which wins over ``config_value`` (the config file's
    ``backend.type``). There is no silent default: with none of them set this raises.
    """
    resolved = resolve_backend_name(name, config_value)
    config = BackendConfig.from_dict({"backend_type": resolved, "device": device, "dtype": dtype, "seed": seed})
    return BackendRegistry.create(config, **options)
