"""``Backend.create_trainer(method, ...)`` once for every backend: name -> the backend's trainer class.

A backend lists the methods it implements (``{"sft": SFTTrainerClass, "dpo": "pkg.dpo:DPOTrainer"}`` — a class,
or a lazy ``"module:attr"`` path for a backend that imports its library only when used); the
method's registration (:mod:`mindprint_interfaces.methods`) gives the config class and whether a
reference model is taken. Asking a backend for a method it does not implement names what it has.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from mindprint_interfaces import ConfigError
from mindprint_interfaces.backend_spec import load_object
from mindprint_interfaces.methods import get_method
from mindprint_interfaces.protocols import Trainer, TrainerCallback

TrainerFactory = Callable[..., Trainer]


def create_trainer(backend: str, trainers: Mapping[str, TrainerFactory | str], method: str, model: Any, config: Any,
                   ref_model: Any = None, *, callbacks: Sequence[TrainerCallback] = ()) -> Trainer:
    spec = get_method(method)
    entry = trainers.get(spec.name)
    if entry is None:
        raise ConfigError(f"method {spec.name!r}: the {backend} backend does not implement it "
                          f"(it has: {', '.join(sorted(trainers))})", key="method")
    if ref_model is not None and not spec.uses_reference:
        raise ConfigError(f"ref_model: method {spec.name!r} trains without a reference model", key="ref_model")
    factory: TrainerFactory = load_object(entry) if isinstance(entry, str) else entry
    cfg = spec.config(config)
    if spec.uses_reference:
        return factory(model, cfg, ref_model=ref_model, callbacks=callbacks)
    return factory(model, cfg, callbacks=callbacks)
