"""Token ids in, text pieces out: streaming with the same stop rules as ``Model.generate``.

``generate`` stops at the EOS id (not part of the answer), at ``max_new_tokens``, and cuts the text before
the earliest stop string (:func:`mindprint_kit.prompts.trim_at_stop`). :func:`stream_text` applies those
rules while tokens arrive: it decodes the whole answer so far (so multi-byte characters split over tokens
come out whole) and holds back any tail that could still become a stop string, so the concatenated pieces
always equal ``generate``'s text for the same tokens.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence

from .prompts import trim_at_stop


def _held_back(text: str, stops: Sequence[str]) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of a stop string."""
    longest = 0
    for s in stops:
        for n in range(min(len(s) - 1, len(text)), 0, -1):
            if text.endswith(s[:n]):
                longest = max(longest, n)
                break
    return longest


def stream_text(tokens: Iterable[int], decode: Callable[[Sequence[int]], str], *, eos_id: int | None,
                stops: Sequence[str] = ()) -> Iterator[str]:
    """Yield the answer's text piece by piece; stops consuming ``tokens`` at EOS or a stop string."""
    ids: list[int] = []
    sent = 0
    stops = [s for s in stops if s]
    for tok in tokens:
        if eos_id is not None and tok == eos_id:
            break
        ids.append(int(tok))
        text = decode(ids)
        if text.endswith("\ufffd"):
            continue  # an incomplete UTF-8 sequence: wait for the next token
        cut, stopped = trim_at_stop(text, stops)
        if stopped:
            if len(cut) > sent:
                yield cut[sent:]
            return
        ready = len(text) - _held_back(text, stops)
        if ready > sent:
            yield text[sent:ready]
            sent = ready
    text = decode(ids)
    cut, _ = trim_at_stop(text, stops)
    if len(cut) > sent:
        yield cut[sent:]
