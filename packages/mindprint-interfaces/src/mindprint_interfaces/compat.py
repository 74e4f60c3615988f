"""What a backend's ``_compat`` modules report about the third-party internals they rely on.

A backend that reads a library's private name (a closure variable, an underscore constant, an
overridden private method) does so in one ``_compat`` module per library. Each such module states
the version range it was verified on (:class:`Tested`) and, when a private name has gone, hands
its caller an "unavailable" result so the public path is taken — and says so through a
:class:`FastPath` entry, so a test fails and ``mindprint doctor`` can show it instead of a run
silently getting slower. Stdlib only: the backends share these shapes, not their contents.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import metadata

_RELEASE = re.compile(r"\d+(?:\.\d+)*")


def release(version: str) -> tuple[int, ...]:
    """The numeric release part of a version string (``"1.16.0rc1"`` -> ``(1, 16, 0)``)."""
    match = _RELEASE.match(version.strip())
    if match is None:
        raise ValueError(f"not a version: {version!r}")
    return tuple(int(part) for part in match.group().split("."))


def _padded(parts: tuple[int, ...], width: int) -> tuple[int, ...]:
    return parts + (0,) * (width - len(parts))


@dataclass(frozen=True)
class Tested:
    """The range ``>=lower,<upper`` of ``distribution`` that a ``_compat`` module was verified on.

    The backend's ``pyproject.toml`` pins the same range, so an install outside it is refused; the
    check here catches a lock or an environment that moved anyway."""

    distribution: str  # as installed (``importlib.metadata`` name): "trl", "mlx-lm"
    lower: str  # inclusive
    upper: str  # exclusive

    @property
    def specifier(self) -> str:
        return f">={self.lower},<{self.upper}"

    def contains(self, version: str) -> bool:
        found, low, high = release(version), release(self.lower), release(self.upper)
        width = max(len(found), len(low), len(high))
        return _padded(low, width) <= _padded(found, width) < _padded(high, width)

    def installed(self) -> str | None:
        try:
            return metadata.version(self.distribution)
        except metadata.PackageNotFoundError:
            return None

    def problem(self) -> str | None:
        """None when the installed version is inside the range, else what is wrong and what to do."""
        found = self.installed()
        if found is None:
            return f"{self.distribution} is not installed"
        if self.contains(found):
            return None
        return (f"{self.distribution} {found} is outside the range {self.specifier} its _compat module was verified "
                f"on: re-verify that module's private names against {found}, then move its TESTED range and the "
                f"pin in pyproject.toml together")


@dataclass(frozen=True)
class FastPath:
    """One reach-in: whether the private names it needs are there (``available``) and, if not, why."""

    name: str  # "trl.compact_head"
    available: bool
    reason: str = ""  # empty when available

    def describe(self) -> str:
        return f"{self.name}: {'on' if self.available else 'off'}" + ("" if self.available else f" ({self.reason})")


def fast_path(name: str, problem: str | None) -> FastPath:
    """A :class:`FastPath` from a check that returns None when all is well, else the reason."""
    return FastPath(name=name, available=problem is None, reason=problem or "")


def method_signature_problem(cls: type, name: str, params: tuple[str, ...]) -> str | None:
    """Why ``cls.<name>`` is not the hook a ``_compat`` module overrides (missing, or parameters other than
    ``params`` after ``self``), or None."""
    import inspect

    hook = getattr(cls, name, None)
    if hook is None:
        return f"{cls.__name__} no longer has {name}"
    found = tuple(p for p in inspect.signature(hook).parameters if p != "self")
    if found != params:
        return f"{cls.__name__}.{name} takes ({', '.join(found)}), not ({', '.join(params)})"
    return None
