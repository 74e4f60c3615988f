"""A chat message, the one type both the protocols and the data layer name.

Its own leaf module because a prompt may be a conversation (``protocols.Prompt``) while the
data layer needs the protocols' ``Tokenizer``: with the type here neither imports the other back.
"""

from __future__ import annotations

from typing import TypedDict


class Message(TypedDict):
    """One chat turn, as a tokenizer's chat template takes it."""

    role: str
    content: str
