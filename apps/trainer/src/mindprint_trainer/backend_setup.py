"""Make the backend a config names and load its model, with the install command in every "missing" error.

Shared by the single-stage commands, ``mindprint train`` and ``mindprint demo``."""

from __future__ import annotations

import inspect
from typing import Any

from mindprint_interfaces import Backend, BackendNotFoundError, ConfigError, Model, create_backend
from mindprint_interfaces.phases import phase
from mindprint_interfaces.registry import ENV_VAR, KNOWN_BACKENDS, BackendRegistry, canonical_name

from .bundled_model import resolve_model_path
from .config import TrainerConfig


def install_hint(name: str) -> str:
    kb = KNOWN_BACKENDS.get(canonical_name(name))
    return f"pip install 'mindprint-trainer[{kb.extra}]'" if kb else "pip install 'mindprint-trainer[all]'"


def make_backend(cfg: TrainerConfig) -> Backend:
    name = cfg.backend.type
    if name is None:
        installed = ", ".join(BackendRegistry.available()) or "none"
        raise ConfigError(f"no backend chosen: pass --backend pytorch|mlx, set {ENV_VAR}, or set backend.type in "
                          f"the config file (installed: {installed})", key="backend.type")
    try:
        with phase("start backend", detail=f"{name} (importing its libraries)"):
            return create_backend(name, device=cfg.backend.device, dtype=cfg.backend.dtype, seed=cfg.backend.seed,
                                  **cfg.backend.options)
    except BackendNotFoundError as exc:
        message = str(exc)
        if "mindprint-trainer[" not in message:
            message += f"; install it with: {install_hint(name)}"
        raise BackendNotFoundError(message) from None
    except ImportError as exc:
        raise BackendNotFoundError(f"the {name} backend cannot be used: {exc.name or exc} is not installed; "
                                   f"install it with: {install_hint(name)}") from None


def load_model(backend: Backend, cfg: TrainerConfig) -> Model:
    path = resolve_model_path(cfg.model.path)
    with phase("load model", detail=str(path) + (f" + {cfg.model.adapter}" if cfg.model.adapter else "")):
        return _load_model(backend, cfg, path)


def _load_model(backend: Backend, cfg: TrainerConfig, path: Any) -> Model:
    if cfg.model.quantization is not None:
        return load_quantized(backend, path, cfg)
    if cfg.model.adapter:
        return backend.load_model(path, adapter_path=cfg.model.adapter)
    return backend.load_model(path)


def load_quantized(backend: Backend, path: Any, cfg: TrainerConfig) -> Model:
    """``model.quantization``: the backends that support it take ``quantization=`` in ``load_model``."""
    loader: Any = backend.load_model
    if "quantization" not in inspect.signature(loader).parameters:
        raise ConfigError(f"the {backend.name} backend cannot load a quantized base", key="model.quantization")
    model: Model = loader(path, adapter_path=cfg.model.adapter, quantization=cfg.model.quantization)
    return model
