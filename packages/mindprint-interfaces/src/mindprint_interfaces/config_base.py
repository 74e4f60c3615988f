"""What every config dataclass shares: building from a dict, and per-field documentation.

Each field is declared with :func:`setting`, which stores its meaning (and the Hugging Face /
TRL / PEFT name where there is one) in the field's metadata. :func:`field_docs` reads it back,
so the README's configuration table and the checks on the bundled YAML come from the classes
themselves instead of a hand-kept copy that drifts.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, TypeVar, Union, get_args, get_origin

from .validation import build, choices

C = TypeVar("C", bound="ConfigBase")

DOC = "doc"
HF_NAME = "hf"


def setting(default: Any = dataclasses.MISSING, doc: str = "", *, hf: str | None = None,
            factory: Callable[[], Any] | None = None) -> Any:
    """A dataclass field with its documentation: ``lr: float = setting(2e-4, "step size", hf="learning_rate")``.

    ``hf`` is the name of the same setting in transformers / TRL / PEFT, for users coming from there.
    """
    metadata = {DOC: doc, HF_NAME: hf}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclass(frozen=True)
class FieldDoc:
    """One documented setting: enough to render a row of a configuration table."""

    name: str
    type: str
    default: Any
    doc: str
    hf: str | None
    aliases: tuple[str, ...] = ()


class ConfigBase:
    """Mixin of the config dataclasses: ``from_dict`` / ``coerce`` / ``to_dict`` / ``replace`` / ``field_docs``."""

    _aliases: ClassVar[Mapping[str, str]] = {}

    @classmethod
    def from_dict(cls: type[C], data: Mapping[str, Any], *, prefix: str = "") -> C:
        return build(cls, data, prefix=prefix, aliases=cls._aliases)

    @classmethod
    def coerce(cls: type[C], value: C | Mapping[str, Any] | None) -> C:
        """Accept an instance, a mapping (callers' dicts) or None (defaults)."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if isinstance(value, Mapping):
            return cls.from_dict(value)
        raise TypeError(f"expected {cls.__name__} or a mapping, got {type(value).__name__}")

    def to_dict(self) -> dict[str, Any]:
        assert dataclasses.is_dataclass(self)
        return dataclasses.asdict(self)

    def replace(self: C, **changes: Any) -> C:
        """A copy with ``changes``, validated like ``from_dict`` (so a bad value names its key)."""
        assert dataclasses.is_dataclass(self)
        current = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}
        return type(self).from_dict({**current, **changes})

    @classmethod
    def field_docs(cls) -> list[FieldDoc]:
        return field_docs(cls)


def field_docs(cls: type) -> list[FieldDoc]:
    """The documented fields of config dataclass ``cls``, in declaration order.

    A subclass that only changes a default (``DPOConfig.learning_rate``) may omit the text; it
    is then taken from the base class that declared the field.
    """
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    hints = typing.get_type_hints(cls)
    aliases: Mapping[str, str] = getattr(cls, "_aliases", {})
    out: list[FieldDoc] = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        doc, hf = f.metadata.get(DOC, ""), f.metadata.get(HF_NAME)
        for base in cls.__mro__[1:]:
            if doc:
                break
            inherited = getattr(base, "__dataclass_fields__", {}).get(f.name)
            if inherited is not None:
                doc, hf = inherited.metadata.get(DOC, ""), hf or inherited.metadata.get(HF_NAME)
        if f.default is not dataclasses.MISSING:
            default: Any = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = dataclasses.MISSING
        out.append(FieldDoc(f.name, type_label(hints[f.name]), default, doc, hf,
                            tuple(sorted(a for a, target in aliases.items() if target == f.name))))
    return out


def type_label(tp: Any) -> str:
    """A field type as a YAML user reads it: ``int``, ``one of: sigmoid, ipo``, ``list of str``, ``... or null``."""
    origin = get_origin(tp)
    if origin is Literal:
        return f"one of: {choices(tp)}"
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        rest = [type_label(a) for a in args if a is not type(None)]
        return " or ".join(rest) + (" or null" if len(rest) < len(args) else "")
    if origin is tuple:
        args = get_args(tp)
        return f"list of {type_label(args[0])}" if args else "list"
    if origin is dict or tp is dict:
        return "mapping"
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return f"section ({tp.__name__})"
    return getattr(tp, "__name__", str(tp))
