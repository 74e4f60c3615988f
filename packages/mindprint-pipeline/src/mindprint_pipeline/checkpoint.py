"""Pipeline checkpoints: ``<checkpoint_dir>/state.json``, written atomically after every topic.

The state names the current base model directory (the original model, or the merged model
of the last finished unit), the adapter the next topic continues from, every finished topic
with its results, and which units were merged. Adapters themselves live next to it in
``<checkpoint_dir>/adapters/`` (saved atomically by the backend) and are never overwritten
once a state references them, so the state on disk is always consistent: a crash or Ctrl-C
at any point leaves the checkpoint of the last completed topic.

Inside a topic the state also records the attempt in progress (``current``: the topic, the attempt, the
results of its earlier attempts and the stages of this attempt that finished). With ``save_steps`` set the
stage trainers write step checkpoints next to their adapters, so a resume continues the interrupted stage
from its newest step checkpoint rather than the topic from its start (see ``DPOPipeline``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mindprint_interfaces import MindprintError
from mindprint_interfaces.fileio import atomic_write_json

from .progress import TopicProgress

STATE_FILE = "state.json"
STATE_VERSION = 1


class CheckpointError(MindprintError, ValueError):
    """A checkpoint is unreadable or does not belong to this curriculum / configuration."""


@dataclass
class PipelineState:
    curriculum_fingerprint: str
    config: dict[str, Any]
    base_model_path: str
    adapter_path: str | None = None
    topics: dict[str, TopicProgress] = field(default_factory=dict)  # finished topics by id
    merged_units: dict[str, str] = field(default_factory=dict)  # unit -> merged model directory
    unit_times: dict[str, float] = field(default_factory=dict)
    elapsed_seconds: float = 0.0
    backend: str | None = None
    current: dict[str, Any] | None = None  # the topic attempt in progress: {"topic", "attempt", "history", "stages"}
    version: int = STATE_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "curriculum_fingerprint": self.curriculum_fingerprint,
            "config": self.config,
            "base_model_path": self.base_model_path,
            "adapter_path": self.adapter_path,
            "topics": {k: v.to_dict() for k, v in self.topics.items()},
            "merged_units": dict(self.merged_units),
            "unit_times": dict(self.unit_times),
            "elapsed_seconds": self.elapsed_seconds,
            "backend": self.backend,
            "current": self.current,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PipelineState:
        version = data.get("version")
        if version != STATE_VERSION:
            raise CheckpointError(f"checkpoint version {version!r} is not supported (expected {STATE_VERSION})")
        try:
            return cls(
                curriculum_fingerprint=str(data["curriculum_fingerprint"]),
                config=dict(data["config"]),
                base_model_path=str(data["base_model_path"]),
                adapter_path=data.get("adapter_path"),
                topics={k: TopicProgress.from_dict(v) for k, v in data.get("topics", {}).items()},
                merged_units=dict(data.get("merged_units", {})),
                unit_times={k: float(v) for k, v in data.get("unit_times", {}).items()},
                elapsed_seconds=float(data.get("elapsed_seconds", 0.0)),
                backend=data.get("backend"),
                current=dict(data["current"]) if data.get("current") else None,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"checkpoint state is malformed: {exc!r}") from None


def state_path(checkpoint_dir: str | Path) -> Path:
    return Path(checkpoint_dir) / STATE_FILE


def save_state(checkpoint_dir: str | Path, state: PipelineState) -> Path:
    """Write ``state.json`` atomically (temp file + fsync + rename)."""
    return atomic_write_json(state_path(checkpoint_dir), state.to_dict())


def load_state(checkpoint_dir: str | Path) -> PipelineState | None:
    """The saved state, or None when the directory holds no checkpoint."""
    path = state_path(checkpoint_dir)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: cannot read checkpoint: {exc}") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: checkpoint must be a JSON object")
    return PipelineState.from_dict(data)


def check_compatible(state: PipelineState, *, fingerprint: str, config: dict[str, Any], source: str) -> None:
    """Refuse to resume a checkpoint made from other data or other training settings."""
    if state.curriculum_fingerprint != fingerprint:
        raise CheckpointError(
            f"{source}: the checkpoint was made from different training data (the curriculum changed); "
            "use a new checkpoint_dir or resume=False to start over")
    keys = sorted(set(state.config) | set(config))
    changed = [k for k in keys if state.config.get(k) != config.get(k)]
    if changed:
        details = ", ".join(f"{k}: {state.config.get(k)!r} -> {config.get(k)!r}" for k in changed)
        raise CheckpointError(
            f"{source}: the checkpoint was made with other training settings ({details}); "
            "use the same settings to resume, or a new checkpoint_dir")
