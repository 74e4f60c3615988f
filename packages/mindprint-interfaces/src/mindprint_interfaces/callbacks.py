"""Deprecated name of :mod:`mindprint_interfaces.callback_dispatch` (kept for code that still imports it)."""

from __future__ import annotations

import warnings

from .callback_dispatch import CallbackRaised, notify_save, notify_step, original_callback_errors

__all__ = ["CallbackRaised", "notify_save", "notify_step", "original_callback_errors"]

warnings.warn("mindprint_interfaces.callbacks is deprecated: import from mindprint_interfaces.callback_dispatch",
              DeprecationWarning, stacklevel=2)
