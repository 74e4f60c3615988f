"""Deprecated name of :mod:`mindprint_pipeline.events` (kept for code that still imports it)."""

from __future__ import annotations

import warnings

from .events import BasePipelineCallback, PipelineCallback, PipelineInterrupted, Stage, StepForwarder

__all__ = ["BasePipelineCallback", "PipelineCallback", "PipelineInterrupted", "Stage", "StepForwarder"]

warnings.warn("mindprint_pipeline.callbacks is deprecated: import from mindprint_pipeline.events",
              DeprecationWarning, stacklevel=2)
