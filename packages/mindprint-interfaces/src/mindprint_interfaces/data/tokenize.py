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


def _check_prefix(longer: str, shorter: str, line: int) -> None:
    if not longer.startswith(shorter):
        raise DataValidationError("<chat template>", [DataIssue(
            line, "messages",
            "the tokenizer's chat template is not prefix-stable (rendering more turns changes earlier text), "
            "so completion tokens cannot be located")])


def render_prompt(tokenizer: Tokenizer, messages: Sequence[Message]) -> list[int]:
    """Ids of a prompt ready for generation (chat template + generation prompt when available)."""
    if tokenizer.has_chat_template:
        return tokenizer.encode(tokenizer.apply_chat_template(list(messages), add_generation_prompt=True))
    ids = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    for m in messages:
        ids += tokenizer.encode(m["content"] + "\n")
    return ids


def conversation_segments(tokenizer: Tokenizer, messages: Sequence[Message], line: int = 0) -> list[tuple[list[int], bool]]:
    """Split a conversation into (ids, is_assistant_completion) segments."""
    segments: list[tuple[list[int], bool]] = []
    if not tokenizer.has_chat_template:
        if tokenizer.bos_token_id is not None:
            segments.append(([tokenizer.bos_token_id], False))
        for m in messages:
            if m["role"] == "assistant":
                eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
                segments.append((tokenizer.encode(m["content"]) + eos, True))
            else:
                segments.append((tokenizer.encode(m["content"] + "\n"), False))
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
            segments.append((tokenizer.encode(before[len(done):]), False))
        segments.append((tokenizer.encode(upto[len(before):]), True))
        done = upto
    rest = tokenizer.apply_chat_template(list(messages))
    _check_prefix(rest, done, line)
    if rest[len(done):].strip():
        segments.append((tokenizer.encode(rest[len(done):]), False))
    return segments


def completion_ids(tokenizer: Tokenizer, prompt: Sequence[Message], answer: str, line: int = 0) -> list[int]:
    """Ids of ``answer`` as the assistant turn following ``prompt`` (including end-of-turn tokens)."""
    if not tokenizer.has_chat_template:
        eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
        return tokenizer.encode(answer) + eos
    before = tokenizer.apply_chat_template(list(prompt), add_generation_prompt=True)
    full = tokenizer.apply_chat_template([*prompt, Message(role="assistant", content=answer)])
    _check_prefix(full, before, line)
    return tokenizer.encode(full[len(before):])


def tokenize_sft(tokenizer: Tokenizer, examples: Sequence[SFTExample], *, max_length: int,
                 truncation: str = "truncate", completion_only_loss: bool = True,
                 source: str = "<records>") -> TokenizedData[TokenizedExample]:
    """Tokenize SFT examples; over-long ones are cut (keep start), dropped or rejected per ``truncation``."""
    out = TokenizedData[TokenizedExample]([])
    errors: list[DataIssue] = []
    for ex in examples:
        ids: list[int] = []
        labels: list[int] = []
        for seg, is_completion in conversation_segments(tokenizer, ex.messages, ex.line):
            ids += seg
            labels += seg if (is_completion or not completion_only_loss) else [IGNORE_INDEX] * len(seg)
        if len(ids) > max_length:
            issue = DataIssue(ex.line, "messages", f"{len(ids)} tokens exceed max_length={max_length}")
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
        prompt = render_prompt(tokenizer, pair.prompt)
        chosen = completion_ids(tokenizer, pair.prompt, pair.chosen, pair.line)
        rejected = completion_ids(tokenizer, pair.prompt, pair.rejected, pair.line)
        longest = len(prompt) + max(len(chosen), len(rejected))
        if longest > max_length:
            issue = DataIssue(pair.line, "prompt", f"{longest} tokens exceed max_length={max_length}")
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

