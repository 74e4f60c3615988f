"""Prompts in, text out: the encoding and stop-string rules both backends must share.

A text prompt is one user turn rendered exactly as the data layer renders training prompts
(:func:`mindprint_interfaces.data.render_prompt`: the chat template with the generation prompt, or
BOS + text + newline for a tokenizer without one), so a model answers a prompt the way it was
trained to see it — on either backend.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mindprint_interfaces.data import Message, render_prompt
from mindprint_interfaces.protocols import Prompt, Tokenizer


def encode_prompt(tokenizer: Tokenizer, prompt: Prompt) -> list[int]:
    """A string (one user turn), a list of token ids (as is) or a list of ``{role, content}`` messages -> ids."""
    if isinstance(prompt, str):
        return render_prompt(tokenizer, [Message(role="user", content=prompt)])
    items: list[Any] = list(prompt)
    if items and all(isinstance(t, int) and not isinstance(t, bool) for t in items):
        return [int(t) for t in items]
    if items and all(isinstance(m, Mapping) for m in items):
        messages = [Message(role=str(m["role"]), content=str(m["content"])) for m in items]
        return render_prompt(tokenizer, messages)
    raise TypeError("prompt must be a string, a list of token ids or a list of {role, content} messages")


def trim_at_stop(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    """Cut ``text`` before the earliest stop string; True when one was found."""
    cut = min((text.find(s) for s in stops if s and s in text), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)
