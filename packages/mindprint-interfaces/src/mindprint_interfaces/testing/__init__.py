"""Test kits for mindprint backends; needs pytest (``pip install 'mindprint-interfaces[testing]'``).

:class:`BackendConformance` (in :mod:`.conformance`) is the suite every backend passes: a backend
package subclasses it in one of its test modules. Importing ``mindprint_interfaces`` never imports
this package, so pytest stays an optional dependency.
"""

from __future__ import annotations

try:
    import pytest
except ImportError as exc:  # pragma: no cover - exercised in an environment without pytest
    raise ImportError("mindprint_interfaces.testing needs pytest: pip install 'mindprint-interfaces[testing]'",
                      name=exc.name) from exc

pytest.register_assert_rewrite("mindprint_interfaces.testing.conformance")

from .conformance import PREFERENCES, SFT_RECORDS, BackendConformance  # noqa: E402 - after the rewrite hook

__all__ = ["PREFERENCES", "SFT_RECORDS", "BackendConformance"]
