"""Building stdlib dataclasses from plain mappings with errors that name the key.

Configs arrive as dicts (YAML files, ``--set`` flags, callers' own dicts); a typo must not be
silently ignored (``learning_rat`` would otherwise train with the default rate), so unknown keys
raise with the closest valid key suggested, and values are type-checked against the field
annotations. A field whose type is itself a config dataclass is a nested section: its keys are
reported with the section's dotted path (``sft.learning_rate``).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import reprlib
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from .errors import ConfigError

T = TypeVar("T")

MAX_SHOWN = 80  # characters of a value an error message shows

_repr = reprlib.Repr()
_repr.maxlevel, _repr.maxlist, _repr.maxtuple, _repr.maxdict, _repr.maxset = 2, 4, 4, 4, 4
_repr.maxstring, _repr.maxother, _repr.maxlong = MAX_SHOWN, MAX_SHOWN, 40


def short(value: Any, limit: int = MAX_SHOWN) -> str:
    """``repr(value)`` bounded to about ``limit`` characters, in time and memory independent of the value's size
    (a shared-reference structure from YAML aliases may stand for millions of values)."""
    try:
        text = _repr.repr(value)
    except Exception:  # a hostile __repr__
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[:limit - 3] + "..."


def suggest(name: str, candidates: typing.Iterable[str]) -> str:
    """' (did you mean "x"?)' for the closest candidate, or ''."""
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f' (did you mean "{close[0]}"?)' if close else ""


def choices(tp: Any) -> str:
    """A Literal's values as a user types them: ``auto, cpu, cuda`` (strings unquoted)."""
    return ", ".join(a if isinstance(a, str) else repr(a) for a in get_args(tp))


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in get_args(tp))
    if origin is not None:
        return getattr(origin, "__name__", str(tp))
    if tp is type(None):
        return "null"  # as YAML writes it
    return getattr(tp, "__name__", str(tp))


def coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against annotation ``tp``; convert lossless cases (int -> float, list -> tuple)."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        errors: list[ConfigError] = []
        for arg in get_args(tp):
            try:
                return coerce(value, arg, key)
            except ConfigError as exc:
                errors.append(exc)
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {short(value)}", key=key)
    if tp is type(None):
        if value is None:
            return None
        raise ConfigError(f"{key}: expected None, got {short(value)}", key=key)
    if origin is Literal:
        if value in get_args(tp):
            return value
        raise ConfigError(f"{key}: must be one of {choices(tp)}, got {short(value)}", key=key)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true/false, got {short(value)}", key=key)
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{key}: expected an integer, got {short(value)}", key=key)
    if tp is float:
        number: float | None = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):
            try:  # YAML reads "3e-4" as a string
                number = float(value)
            except ValueError:
                pass
        if number is None:
            raise ConfigError(f"{key}: expected a number, got {short(value)}", key=key)
        if not math.isfinite(number):
            raise ConfigError(f"{key}: must be a finite number, got {short(value)}", key=key)
        return number
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key}: expected a string, got {short(value)}", key=key)
    if origin is tuple:
        args = get_args(tp)
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {short(value)}", key=key)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise ConfigError(f"{key}: expected {len(args)} items, got {len(value)}", key=key)
        return tuple(coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(args, value)))
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if isinstance(value, Mapping):
            from_dict = getattr(tp, "from_dict", None)  # a config class may add its own key handling
            if callable(from_dict):
                return from_dict(value, prefix=f"{key}.")
            return build(tp, value, prefix=f"{key}.")
        raise ConfigError(f"{key}: expected a mapping of keys, got {short(value)}", key=key)
    if origin is dict or tp is dict:
        if isinstance(value, Mapping):
            return dict(value)
        raise ConfigError(f"{key}: expected a mapping, got {short(value)}", key=key)
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise ConfigError(f"{key}: expected {_type_name(tp)}, got {short(value)}", key=key)


def build(cls: type[T], data: Mapping[str, Any], *, prefix: str = "", aliases: Mapping[str, str] | None = None) -> T:
    """Instantiate dataclass ``cls`` from ``data``, rejecting unknown keys and wrong types."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    if not isinstance(data, Mapping):
        raise ConfigError(f"{prefix or cls.__name__}: expected a mapping, got {type(data).__name__}", key=prefix or None)
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls) if f.init}
    aliases = aliases or {}
    kwargs: dict[str, Any] = {}
    for raw_key, value in data.items():
        key = aliases.get(raw_key, raw_key)
        path = f"{prefix}{raw_key}"
        if key not in fields:
            raise ConfigError(
                f'unknown key "{path}"{suggest(raw_key, sorted(fields | set(aliases)))}; valid keys: {", ".join(sorted(fields))}',
                key=path,
            )
        kwargs[key] = coerce(value, hints[key], path)
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        if prefix and exc.key and not exc.key.startswith(prefix):
            raise ConfigError(str(exc).replace(exc.key, prefix + exc.key, 1), key=prefix + exc.key) from None
        raise


def check(condition: bool, key: str, message: str) -> None:
    """Raise ConfigError naming ``key`` unless ``condition``."""
    if not condition:
        raise ConfigError(f"{key}: {message}", key=key)
