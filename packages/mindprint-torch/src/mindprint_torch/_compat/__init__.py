"""The third-party internals mindprint-torch relies on, one module per library.

TRL's (:mod:`.trl`) and transformers' (:mod:`.transformers`: the training sampler hook and the HF Trainer's
resume methods); PEFT and accelerate are reached through public names only. Nothing outside this package may touch a library's private name: a test walks the sources.
"""

from __future__ import annotations

from mindprint_interfaces.compat import FastPath, Tested

from . import transformers, trl

TESTED: tuple[Tested, ...] = (trl.TESTED, transformers.TESTED)


def fast_paths() -> list[FastPath]:
    """Every reach-in of this backend: on, or off and why."""
    return trl.fast_paths() + transformers.fast_paths()


def version_problems() -> list[str]:
    """One line per library installed outside the range its compat module was verified on."""
    return [p for p in (t.problem() for t in TESTED) if p is not None]


def compat_report() -> list[str]:
    """Human-readable lines for ``mindprint doctor``: versions against their tested ranges, then the fast paths."""
    versions = [f"{t.distribution} {t.installed() or 'missing'} (tested {t.specifier})" for t in TESTED]
    return versions + version_problems() + [p.describe() for p in fast_paths()]
