"""Normalised training records: every accepted input shape becomes one of these two types."""

from __future__ import annotations

from dataclasses import dataclass

from ..messages import Message


@dataclass(frozen=True)
class SFTExample:
    """A supervised example as a conversation; loss goes on the assistant turns."""

    messages: tuple[Message, ...]
    topic_id: str | None = None
    line: int = 0  # where it came from, for error messages

    @property
    def prompt_messages(self) -> tuple[Message, ...]:
        """The conversation up to (not including) the last assistant turn."""
        last = max(i for i, m in enumerate(self.messages) if m["role"] == "assistant")
        return self.messages[:last]

    @property
    def reference_answer(self) -> str:
        return [m for m in self.messages if m["role"] == "assistant"][-1]["content"]


@dataclass(frozen=True)
class PreferencePair:
    """A DPO pair: one prompt (as messages), a preferred and a dispreferred answer."""

    prompt: tuple[Message, ...]
    chosen: str
    rejected: str
    topic_id: str | None = None
    line: int = 0

    @property
    def prompt_text(self) -> str:
        """The last user turn; used to attach pairs to SFT topics by prompt match."""
        users = [m["content"] for m in self.prompt if m["role"] == "user"]
        return users[-1] if users else self.prompt[-1]["content"]
