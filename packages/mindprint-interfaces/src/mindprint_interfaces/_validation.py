"""Deprecated private name of :mod:`mindprint_interfaces.validation` (kept so existing imports work)."""

from __future__ import annotations

from .validation import _type_name, build, check, coerce, suggest

__all__ = ["_type_name", "build", "check", "coerce", "suggest"]
