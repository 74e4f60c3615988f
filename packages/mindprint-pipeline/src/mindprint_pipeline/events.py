"""Pipeline events for applications (progress bars, metrics.jsonl) and a way to stop a run cleanly."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal, Protocol

from mindprint_interfaces import MindprintError

from .progress import TopicProgress, UnitProgress

# A training step's stage: "sft", or the preference stage under its method's own name (pipeline.preference_method).
Stage = Literal["sft", "dpo", "orpo", "cpo", "kto"]
PREFERENCE_STAGES: tuple[Stage, ...] = ("dpo", "orpo", "cpo", "kto")

log = logging.getLogger("mindprint_pipeline")


class PipelineInterrupted(MindprintError):
    """Raise from a callback to stop the pipeline after the current topic's checkpoint.

    ``train_curriculum`` catches it and returns the partial :class:`PipelineResult`
    (``completed=False``); ``resume=True`` continues from there.
    """


class PipelineCallback(Protocol):
    """What the pipeline reports. Subclass :class:`BasePipelineCallback` and override what you need."""

    def on_topic_start(self, topic_id: str, attempt: int) -> None: ...
    def on_step(self, stage: Stage, topic_id: str, step: int, metrics: Mapping[str, float]) -> None: ...
    def on_topic_end(self, progress: TopicProgress) -> None: ...
    def on_unit_end(self, progress: UnitProgress) -> None: ...


class BasePipelineCallback:
    """A PipelineCallback that does nothing."""

    def on_topic_start(self, topic_id: str, attempt: int) -> None:
        return None

    def on_step(self, stage: Stage, topic_id: str, step: int, metrics: Mapping[str, float]) -> None:
        return None

    def on_topic_end(self, progress: TopicProgress) -> None:
        return None

    def on_unit_end(self, progress: UnitProgress) -> None:
        return None


class StepForwarder:
    """A backend TrainerCallback that forwards training steps to the pipeline callbacks."""

    def __init__(self, stage: Stage, topic_id: str, callbacks: Sequence[PipelineCallback]) -> None:
        self.stage: Stage = stage
        self.topic_id = topic_id
        self.callbacks = list(callbacks)
        self.last_metrics: dict[str, float] = {}
        self.steps = 0

    def on_step(self, step: int, metrics: Mapping[str, float]) -> None:
        self.steps = step
        self.last_metrics = dict(metrics)
        for cb in self.callbacks:
            cb.on_step(self.stage, self.topic_id, step, metrics)

    def on_save(self, path: Path) -> None:
        return None
