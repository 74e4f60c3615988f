"""Training methods by name: ``sft``, ``dpo``, and whatever a package registers (PEFT's ``register_peft_method`` idea).

A method is its name, its config class (the schema of its settings) and whether it learns against a
reference model. Each backend maps the names it implements to its trainer classes
(``Backend.create_trainer``); the app and the pipeline list and validate methods here, never by
hard-coded names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .configs import CPOConfig, DPOConfig, KTOConfig, ORPOConfig, SFTConfig, TrainConfigBase
from .errors import ConfigError
from .validation import suggest


@dataclass(frozen=True)
class TrainingMethod:
    name: str
    config_class: type[TrainConfigBase]
    uses_reference: bool  # learns against a frozen reference model (the trainer accepts ref_model)
    description: str

    def config(self, value: TrainConfigBase | Mapping[str, Any] | None) -> TrainConfigBase:
        """The method's config from an instance, a mapping or None (defaults)."""
        if isinstance(value, TrainConfigBase) and not isinstance(value, self.config_class):
            raise ConfigError(f"{self.name}: expected a {self.config_class.__name__}, got {type(value).__name__}",
                              key="method")
        return self.config_class.coerce(value)


_METHODS: dict[str, TrainingMethod] = {}


def register_method(method: TrainingMethod) -> TrainingMethod:
    """Make ``method`` known by its name (a later registration of the same name replaces it)."""
    _METHODS[method.name] = method
    return method


def get_method(name: str) -> TrainingMethod:
    method = _METHODS.get(name.strip().lower()) if isinstance(name, str) else None
    if method is None:
        raise ConfigError(f"unknown training method {name!r}; known: {', '.join(sorted(_METHODS))}"
                          + suggest(str(name), sorted(_METHODS)), key="method")
    return method


def method_names() -> list[str]:
    return sorted(_METHODS)


register_method(TrainingMethod("sft", SFTConfig, False, "supervised fine-tuning on prompt/completion records"))
register_method(TrainingMethod("dpo", DPOConfig, True, "direct preference optimisation on chosen/rejected pairs"))
register_method(TrainingMethod("orpo", ORPOConfig, False,
                                "odds-ratio preference optimisation on chosen/rejected pairs (no reference, no SFT stage)"))
register_method(TrainingMethod("cpo", CPOConfig, False,
                                "contrastive preference optimisation / SimPO on chosen/rejected pairs (no reference)"))
register_method(TrainingMethod("kto", KTOConfig, True,
                                "Kahneman-Tversky optimisation on prompt/completion records labelled true/false"))
