"""Records -> token ids + loss masks, through the Tokenizer protocol.

Both backends call these functions with the same HF tokenizer, so they train on identical
inputs. Text is rendered with the tokenizer's chat template when it has one; each turn is
encoded separately (prefix differences of the rendered conversation), which makes the
completion boundary exact instead of guessed from a joint encoding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from ..errors import DataIssue, DataValidationError
from ..messages import Message
from ..protocols import Tokenizer
from .records import PreferencePair, SFTExample

IGNORE_INDEX = -100


@dataclass(frozen=True)
class TokenizedExample:
    input_ids: tuple[int, ...]
    labels: tuple[int, ...]  # IGNORE_INDEX where no loss is taken
    line: int = 0

    @property
    def num_loss_tokens(self) -> int:
        return sum(1 for t in self.labels if t != IGNORE_INDEX)


@dataclass(frozen=True)
class TokenizedPair:
    prompt_ids: tuple[int, ...]
    chosen_ids: tuple[int, ...]
    rejected_ids: tuple[int, ...]
    line: int = 0


T = TypeVar("T")


@dataclass
class TokenizedData(Generic[T]):
    """Tokenized examples plus what the truncation policy did (so ``samples_trained`` stays true)."""

    examples: list[T]
    truncated: int = 0
    dropped: list[DataIssue] = field(default_factory=list)
    over_length: int = 0  # records longer than max_length (truncated, dropped or rejected)
    longest_line: int = 0  # the longest of them: its line and its length in characters
    longest_chars: int = 0

    def note_truncated(self, line: int, chars: int) -> None:
        self.over_length += 1
        if chars > self.longest_chars:
            self.longest_line, self.longest_chars = line, chars


# Tokenising only what can be kept: a text far longer than the tokens still wanted is encoded by its prefix.
# A token rarely covers more than a few characters, so (need + margin) * 16 characters nearly always hold the
# tokens wanted; when they do not, the prefix grows 4x at a time (the cost stays within a small factor of the kept
# length). The margin keeps the cut far from the tokens kept (BPE merges are local).
_CHARS_PER_TOKEN = 16
_MARGIN = 16


def encode_prefix(tokenizer: Tokenizer, text: str, need: int | None) -> tuple[list[int], bool]:
    """``tokenizer.encode(text)``, or the ids of a prefix holding at least ``need`` tokens (True: the text was cut).

    The first ``need`` ids are those of the whole text; ``need=None`` encodes everything.
    """
    if need is None:
        return tokenizer.encode(text), False
    if need <= 0:
        return [], bool(text)
    limit = (need + _MARGIN) * _CHARS_PER_TOKEN
    while len(text) > limit:
        ids = tokenizer.encode(text[:limit])
        if len(ids) >= need + _MARGIN:
            return ids[:need + _MARGIN], True
        limit *= 4
    return tokenizer.encode(text), False


def _check_prefix(longer: str, shorter: str, line: int) -> None:
    if not longer.startswith(shorter):
        raise DataValidationError("<chat template>", [DataIssue(
            line, "messages",
            "the tokenizer's chat template is not prefix-stable (rendering more turns changes earlier text), "
            "so completion tokens cannot be located")])


def render_prompt(tokenizer: Tokenizer, messages: Sequence[Message], *, budget: int | None = None) -> list[int]:
    """Ids of a prompt ready for generation (chat template + generation prompt when available).

    With ``budget``, at most about that many tokens are encoded (the rest of an over-long prompt is not kept).
    """
    if tokenizer.has_chat_template:
        return encode_prefix(tokenizer, tokenizer.apply_chat_template(list(messages), add_generation_prompt=True),
                             budget)[0]
    ids = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    for m in messages:
        ids += encode_prefix(tokenizer, m["content"] + "\n", None if budget is None else budget - len(ids))[0]
    return ids


def conversation_segments(tokenizer: Tokenizer, messages: Sequence[Message], line: int = 0, *,
                          budget: int | None = None) -> list[tuple[list[int], bool]]:
    """Split a conversation into (ids, is_assistant_completion) segments.

    With ``budget``, encoding stops once that many tokens are there (the rest could not be kept anyway).
    """
    segments: list[tuple[list[int], bool]] = []
    total = 0

    def add(text: str, is_completion: bool, tail: Sequence[int] = ()) -> None:
        nonlocal total
        need = None if budget is None else budget - total
        ids, cut = encode_prefix(tokenizer, text, need)
        if not cut:
            ids = ids + list(tail)
        if ids:
            segments.append((ids, is_completion))
            total += len(ids)

    if not tokenizer.has_chat_template:
        if tokenizer.bos_token_id is not None:
            segments.append(([tokenizer.bos_token_id], False))
            total += 1
        for m in messages:
            if m["role"] == "assistant":
                eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
                add(m["content"], True, eos)
            else:
                add(m["content"] + "\n", False)
        return segments
    done = ""
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        before = tokenizer.apply_chat_template(list(messages[:i]), add_generation_prompt=True) if i else ""
        upto = tokenizer.apply_chat_template(list(messages[: i + 1]))
        _check_prefix(before, done, line)
        _check_prefix(upto, before, line)
        if before[len(done):]:
            add(before[len(done):], False)
        add(upto[len(before):], True)
        done = upto
    rest = tokenizer.apply_chat_template(list(messages))
    _check_prefix(rest, done, line)
    if rest[len(done):].strip():
        add(rest[len(done):], False)
    return segments


def completion_ids(tokenizer: Tokenizer, prompt: Sequence[Message], answer: str, line: int = 0, *,
                   budget: int | None = None) -> list[int]:
    """Ids of ``answer`` as the assistant turn following ``prompt`` (including end-of-turn tokens).

    With ``budget``, at most about that many tokens are encoded.
    """
    if not tokenizer.has_chat_template:
        eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
        ids, cut = encode_prefix(tokenizer, answer, budget)
        return ids if cut else ids + eos
    before = tokenizer.apply_chat_template(list(prompt), add_generation_prompt=True)
    full = tokenizer.apply_chat_template([*prompt, Message(role="assistant", content=answer)])
    _check_prefix(full, before, line)
    return encode_prefix(tokenizer, full[len(before):], budget)[0]


def _chars(messages: Sequence[Message]) -> int:
    return sum(len(m["content"]) for m in messages)


def tokenize_sft(tokenizer: Tokenizer, examples: Sequence[SFTExample], *, max_length: int,
                 truncation: str = "truncate", completion_only_loss: bool = True,
                 source: str = "<records>") -> TokenizedData[TokenizedExample]:
    """Tokenize SFT examples; over-long ones are cut (keep start), dropped or rejected per ``truncation``."""
    out = TokenizedData[TokenizedExample]([])
    errors: list[DataIssue] = []
    for ex in examples:
        ids: list[int] = []
        labels: list[int] = []
        for seg, is_completion in conversation_segments(tokenizer, ex.messages, ex.line, budget=max_length + 1):
            ids += seg
            labels += seg if (is_completion or not completion_only_loss) else [IGNORE_INDEX] * len(seg)
        if len(ids) > max_length:
            out.note_truncated(ex.line, _chars(ex.messages))
            issue = DataIssue(ex.line, "messages", f"more than max_length={max_length} tokens "
                                                   f"({_chars(ex.messages)} characters)")
            if truncation == "error":
                errors.append(issue)
                continue
            if truncation == "drop":
                out.dropped.append(issue)
                continue
            ids, labels = ids[:max_length], labels[:max_length]
            if not any(t != IGNORE_INDEX for t in labels[1:]):
                out.dropped.append(DataIssue(ex.line, "messages", f"no completion tokens left within max_length={max_length}"))
                continue
            out.truncated += 1
        if not any(t != IGNORE_INDEX for t in labels[1:]):
            out.dropped.append(DataIssue(ex.line, "messages", "no completion tokens to train on"))
            continue
        out.examples.append(TokenizedExample(tuple(ids), tuple(labels), ex.line))
    if errors:
        raise DataValidationError(source, errors)
    if not out.examples:
        raise DataValidationError(source, out.dropped or [DataIssue(0, "", "no trainable examples")])
    return out


def tokenize_preferences(tokenizer: Tokenizer, pairs: Sequence[PreferencePair], *, max_length: int,
                         truncation: str = "truncate", source: str = "<records>") -> TokenizedData[TokenizedPair]:
    """Tokenize DPO pairs; prompt + completion is cut to ``max_length`` (keep start) per ``truncation``."""
    out = TokenizedData[TokenizedPair]([])
    errors: list[DataIssue] = []
    for pair in pairs:
        prompt = render_prompt(tokenizer, pair.prompt, budget=max_length + 1)
        room = max(max_length - len(prompt), 0) + 1
        chosen = completion_ids(tokenizer, pair.prompt, pair.chosen, pair.line, budget=room)
        rejected = completion_ids(tokenizer, pair.prompt, pair.rejected, pair.line, budget=room)
        longest = len(prompt) + max(len(chosen), len(rejected))
        if longest > max_length:
            chars = _chars(pair.prompt) + max(len(pair.chosen), len(pair.rejected))
            out.note_truncated(pair.line, chars)
            issue = DataIssue(pair.line, "prompt", f"more than max_length={max_length} tokens ({chars} characters)")
            if truncation == "error":
                errors.append(issue)
                continue
            if truncation == "drop" or len(prompt) >= max_length:
                out.dropped.append(issue)
                continue
            room = max_length - len(prompt)
            chosen, rejected = chosen[:room], rejected[:room]
            out.truncated += 1
        out.examples.append(TokenizedPair(tuple(prompt), tuple(chosen), tuple(rejected), pair.line))
    if errors:
        raise DataValidationError(source, errors)
    if not out.examples:
        raise DataValidationError(source, out.dropped or [DataIssue(0, "", "no trainable pairs")])
    return out

