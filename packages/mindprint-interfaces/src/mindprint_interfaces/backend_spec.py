"""What a host needs from a backend besides the Backend object: its launcher, converter, rank and packages.

A backend package registers one :class:`BackendSpec` (through the ``mindprint.backends`` entry point
or :meth:`~mindprint_interfaces.BackendRegistry.register`) so an application never hard-codes backend
names, module paths or launchers. Every callable may be given as a lazy ``"module:attr"`` path: the
module holding the spec must import nothing heavy (no torch/mlx) so that listing backends, checking
a rank or building a launch command stays cheap; the heavy modules load when a method needs them.
A capability a backend does not provide is ``None`` and asking for it raises a :class:`ConfigError`
that names the backend (e.g. ``--nproc`` for a backend without a data-parallel launcher).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

from .configs import BackendConfig
from .errors import ConfigError
from .protocols import Backend, PathLike

BackendFactory = Callable[[BackendConfig], Backend]
Launcher = Callable[[int, Sequence[str]], list[str]]
"""``launcher(nproc, inner_argv)``: the command that runs ``inner_argv`` (an interpreter and its arguments) N times."""
AdapterConverter = Callable[..., Path]
"""``convert(src, dst, *, to=...)``: write the adapter at ``src`` to ``dst`` in the ``to`` layout; returns ``dst``."""

_T = TypeVar("_T")


@lru_cache(maxsize=None)
def load_object(path: str) -> Any:
    """Import ``"module:attr"`` (``attr`` may be dotted) and return the object."""
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"expected a 'module:attr' path, got {path!r}")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def _resolve(target: _T | str) -> _T:
    if isinstance(target, str):
        resolved: _T = load_object(target)
        return resolved
    return target


@dataclass(frozen=True)
class BackendSpec:
    """One backend as the registry sees it. Only ``name`` and ``factory`` are required.

    ``launch_env``: environment variables the backend's launcher sets in every process it starts (their
    presence marks a launched process); ``rank_env``: the variable holding this process's rank;
    ``distributions``: the installed distributions the backend needs (what ``mindprint doctor`` lists);
    ``wraps``: top-level modules whose model objects the backend's ``wrap(model, tokenizer)`` accepts
    (e.g. ``("transformers", "peft")``), so a caller holding a foreign model finds the backend by the model.
    """

    name: str
    factory: BackendFactory | str
    launcher: Launcher | str | None = None
    converter: AdapterConverter | str | None = None
    launch_env: tuple[str, ...] = ()
    rank_env: str | None = None
    distributions: tuple[str, ...] = ()
    wraps: tuple[str, ...] = ()

    def can_wrap(self, model: object) -> bool:
        """True when ``model``'s class comes from one of the libraries this backend wraps."""
        return type(model).__module__.split(".")[0] in self.wraps

    def load_factory(self) -> BackendFactory:
        return _resolve(self.factory)

    def create(self, config: BackendConfig) -> Backend:
        return self.load_factory()(config)

    @property
    def has_launcher(self) -> bool:
        return self.launcher is not None

    @property
    def has_converter(self) -> bool:
        return self.converter is not None

    def launch_command(self, nproc: int, inner_argv: Sequence[str]) -> list[str]:
        """The data-parallel command running ``inner_argv`` on ``nproc`` local processes."""
        if self.launcher is None:
            raise ConfigError(f"the {self.name} backend provides no data-parallel launcher; run without --nproc",
                              key="backend.type")
        return list(_resolve(self.launcher)(nproc, list(inner_argv)))

    def load_converter(self) -> AdapterConverter:
        """The converter itself (imports its module: an ImportError means the backend's libraries are missing)."""
        if self.converter is None:
            raise ConfigError(f"the {self.name} backend provides no adapter converter", key="backend.type")
        return _resolve(self.converter)

    def convert(self, src: PathLike, dst: PathLike, *, to: str) -> Path:
        """Convert an adapter directory between layouts with the backend's converter."""
        return Path(self.load_converter()(src, dst, to=to))

    def launched(self, env: Mapping[str, str] | None = None) -> bool:
        """Whether this process was started by the backend's launcher."""
        env = os.environ if env is None else env
        return any(env.get(name) for name in self.launch_env)

    def rank(self, env: Mapping[str, str] | None = None) -> int | None:
        """This process's rank under the backend's launcher; None when the variable is unset or not a number."""
        env = os.environ if env is None else env
        value = env.get(self.rank_env) if self.rank_env else None
        return int(value) if value and value.isdigit() else None
