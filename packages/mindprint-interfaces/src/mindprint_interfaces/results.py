"""Plain result records returned by backends and trainers (the 0.1 contracts every backend keeps)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass
class TrainingResult:
    """What a training run reports. ``train()`` returns it instead of raising on a training failure."""

    success: bool
    final_loss: float
    training_time_seconds: float
    samples_trained: int
    adapter_path: str = ""
    error_message: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)


FinishReason = Literal["stop", "length"]


@dataclass(frozen=True)
class Generation:
    """A generated completion: the same type on every backend (never a raw string or tensor)."""

    text: str
    token_ids: tuple[int, ...]
    finish_reason: FinishReason
    prompt_tokens: int = 0

    def __str__(self) -> str:
        return self.text


@dataclass
class ForwardOutput:
    """Output of ``Model.forward``.

    ``logits`` is the backend's native array (torch.Tensor / mx.array) of shape (batch, seq, vocab);
    ``loss`` is the mean token cross-entropy over labelled positions when labels were given.
    """

    logits: Any
    loss: float | None = None
