"""Progress records (topic -> chapter -> unit -> pipeline), JSON round-trippable for checkpoints."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

TopicStatus = Literal["pending", "passed", "failed"]


@dataclass
class AttemptResult:
    """One try at a topic: SFT, evaluation, optional DPO, re-evaluation."""

    attempt: int  # 0 = first try, 1.. = retries
    seed: int
    sft_loss: float | None = None
    sft_samples: int = 0
    accuracy_after_sft: float = 0.0
    voice_after_sft: float = 0.0
    dpo_applied: bool = False
    dpo_loss: float | None = None
    dpo_samples: int = 0
    accuracy: float = 0.0
    voice: float = 0.0
    score: float = 0.0  # (accuracy + voice) / 2
    passed: bool = False
    adapter_path: str | None = None
    time_seconds: float = 0.0
    error: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)  # everything the evaluator returned (final)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AttemptResult:
        return cls(**data)


@dataclass
class TopicProgress:
    topic_id: str
    index: int
    status: TopicStatus = "pending"
    attempts: int = 0
    accuracy: float = 0.0
    voice: float = 0.0
    score: float = 0.0
    dpo_applied: bool = False
    sft_loss: float | None = None
    dpo_loss: float | None = None
    adapter_path: str | None = None  # the adapter the curriculum continues from (best attempt)
    time_seconds: float = 0.0
    error: str | None = None
    history: list[AttemptResult] = field(default_factory=list)

    @property
    def unit(self) -> str:
        return self.topic_id.split("/")[0]

    @property
    def chapter(self) -> str:
        return self.topic_id.split("/")[1]

    @property
    def name(self) -> str:
        return self.topic_id.split("/")[2]

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    @property
    def retries(self) -> int:
        return max(0, self.attempts - 1)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TopicProgress:
        data = dict(data)
        history = [AttemptResult.from_dict(h) for h in data.pop("history", [])]
        return cls(**data, history=history)


def _pass_rate(topics: list[TopicProgress]) -> float:
    """Passed / finished topics (pending ones do not count yet; 0.0 before any finished)."""
    done = [t for t in topics if t.status != "pending"]
    return sum(t.passed for t in done) / len(done) if done else 0.0


class _TopicCounts:
    """The counts a chapter and a unit both report, over the topics they hold (a field of a chapter,
    derived from the chapters for a unit)."""

    if TYPE_CHECKING:
        @property
        def topics(self) -> list[TopicProgress]: ...

    @property
    def passed(self) -> int:
        return sum(t.passed for t in self.topics)

    @property
    def failed(self) -> int:
        return sum(t.status == "failed" for t in self.topics)

    @property
    def pass_rate(self) -> float:
        return _pass_rate(self.topics)


@dataclass
class ChapterProgress(_TopicCounts):
    unit: str
    chapter: str
    topics: list[TopicProgress] = field(default_factory=list)

    @property
    def completed(self) -> bool:
        return all(t.status != "pending" for t in self.topics)

    def to_dict(self) -> dict[str, Any]:
        return {"unit": self.unit, "chapter": self.chapter, "topics": [t.to_dict() for t in self.topics]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ChapterProgress:
        return cls(data["unit"], data["chapter"], [TopicProgress.from_dict(t) for t in data.get("topics", [])])


@dataclass
class UnitProgress(_TopicCounts):
    unit: str
    chapters: list[ChapterProgress] = field(default_factory=list)
    merged_model_path: str | None = None  # set after the unit's adapters were merged (merge_after_unit)
    time_seconds: float = 0.0

    @property
    def topics(self) -> list[TopicProgress]:
        return [t for c in self.chapters for t in c.topics]

    @property
    def completed(self) -> bool:
        return all(c.completed for c in self.chapters)

    def to_dict(self) -> dict[str, Any]:
        return {"unit": self.unit, "chapters": [c.to_dict() for c in self.chapters],
                "merged_model_path": self.merged_model_path, "time_seconds": self.time_seconds}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UnitProgress:
        return cls(data["unit"], [ChapterProgress.from_dict(c) for c in data.get("chapters", [])],
                   data.get("merged_model_path"), float(data.get("time_seconds", 0.0)))


@dataclass
class PipelineResult:
    """The outcome of :meth:`DPOPipeline.train_curriculum` (partial when ``completed`` is False)."""

    units: list[UnitProgress] = field(default_factory=list)
    total_time_seconds: float = 0.0
    completed: bool = False  # False when the run was stopped early (stop_after_topics / PipelineInterrupted)
    final_model_path: str | None = None  # the base the last adapter sits on (a merged model after a unit merge)
    final_adapter_path: str | None = None  # None when the last unit was merged into final_model_path
    unmatched_preferences: list[dict[str, Any]] = field(default_factory=list)
    backend: str | None = None

    @property
    def topics(self) -> list[TopicProgress]:
        return [t for u in self.units for t in u.topics]

    @property
    def total_topics(self) -> int:
        return len(self.topics)

    @property
    def passed_topics(self) -> list[str]:
        return [t.topic_id for t in self.topics if t.passed]

    @property
    def failed_topics(self) -> list[str]:
        return [t.topic_id for t in self.topics if t.status == "failed"]

    @property
    def pending_topics(self) -> list[str]:
        return [t.topic_id for t in self.topics if t.status == "pending"]

    @property
    def pass_rate(self) -> float:
        """Passed / finished topics (0.0 before any topic finished)."""
        return _pass_rate(self.topics)

    @property
    def success(self) -> bool:
        return self.completed and not self.failed_topics

    def topic(self, topic_id: str) -> TopicProgress:
        for t in self.topics:
            if t.topic_id == topic_id:
                return t
        raise KeyError(topic_id)

    def summary(self) -> str:
        done = self.total_topics - len(self.pending_topics)
        head = (f"{len(self.passed_topics)}/{done} topics passed ({self.pass_rate:.0%})"
                f" in {self.total_time_seconds:.1f}s" + ("" if self.completed else f"; {len(self.pending_topics)} pending"))
        lines = [head]
        for t in self.topics:
            lines.append(f"  {t.topic_id}: {t.status} (accuracy {t.accuracy:.2f}, voice {t.voice:.2f}, "
                         f"attempts {t.attempts}{', dpo' if t.dpo_applied else ''})")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "units": [u.to_dict() for u in self.units],
            "total_time_seconds": self.total_time_seconds,
            "completed": self.completed,
            "final_model_path": self.final_model_path,
            "final_adapter_path": self.final_adapter_path,
            "unmatched_preferences": list(self.unmatched_preferences),
            "backend": self.backend,
            # derived, for readers of the JSON file (ignored by from_dict)
            "pass_rate": self.pass_rate,
            "passed_topics": self.passed_topics,
            "failed_topics": self.failed_topics,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PipelineResult:
        return cls(
            units=[UnitProgress.from_dict(u) for u in data.get("units", [])],
            total_time_seconds=float(data.get("total_time_seconds", 0.0)),
            completed=bool(data.get("completed", False)),
            final_model_path=data.get("final_model_path"),
            final_adapter_path=data.get("final_adapter_path"),
            unmatched_preferences=list(data.get("unmatched_preferences", [])),
            backend=data.get("backend"),
        )
