"""Data layer: every bad line reported with file, line, field; identical tokenization rules."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from mindprint_interfaces import DataValidationError, HFTokenizer
from mindprint_interfaces.data import (
    IGNORE_INDEX,
    load_preference_jsonl,
    load_sft_jsonl,
    parse_sft_records,
    tokenize_preferences,
    tokenize_sft,
)


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "record",
    [
        {"instruction": "Say hi", "output": "Hi"},
        {"question": "Say hi", "answer": "Hi"},
        {"prompt": "Say hi", "completion": "Hi"},
        {"messages": [{"role": "user", "content": "Say hi"}, {"role": "assistant", "content": "Hi"}]},
    ],
)
def test_all_sft_shapes_normalise_to_the_same_conversation(tmp_path: Path, record: dict[str, object]) -> None:
    path = write(tmp_path / "sft.jsonl", [json.dumps({**record, "source": "u1/c1/t1"})])
    [ex] = load_sft_jsonl(path)
    assert [m["role"] for m in ex.messages] == ["user", "assistant"]
    assert ex.reference_answer == "Hi"
    assert ex.topic_id == "u1/c1/t1"
    assert ex.line == 1


def test_empty_file(tmp_path: Path) -> None:
    path = write(tmp_path / "sft.jsonl", [])
    with pytest.raises(DataValidationError, match="file is empty") as info:
        load_sft_jsonl(path)
    assert info.value.file == str(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataValidationError, match="file not found"):
        load_sft_jsonl(tmp_path / "nope.jsonl")


def test_every_bad_line_is_reported_once(tmp_path: Path) -> None:
    good = json.dumps({"question": "q", "answer": "a"})
    path = write(
        tmp_path / "sft.jsonl",
        [
            good,  # 1
            "",  # 2 blank line
            "{not json",  # 3 invalid JSON
            json.dumps({"question": 42, "answer": "a"}),  # 4 non-string field
            json.dumps({"question": "q"}),  # 5 missing field
            json.dumps({"foo": "bar"}),  # 6 unknown shape
            json.dumps({"messages": [{"role": "user", "content": "q"}]}),  # 7 no assistant turn
            json.dumps({"messages": [{"role": "robot", "content": "q"}, {"role": "assistant", "content": "a"}]}),  # 8
            good,  # 9
        ],
    )
    with pytest.raises(DataValidationError) as info:
        load_sft_jsonl(path)
    issues = {i.line: i for i in info.value.issues}
    assert sorted(issues) == [2, 3, 4, 5, 6, 7, 8]
    assert issues[2].reason == "blank line"
    assert "invalid JSON" in issues[3].reason
    assert issues[4].field == "question" and "must be a string" in issues[4].reason
    assert issues[5].field == "output/answer/completion" and "missing" in issues[5].reason
    assert "unknown record shape" in issues[6].reason
    assert "no assistant message" in issues[7].reason
    assert issues[8].field == "messages[0].role"
    text = str(info.value)
    assert f"{path}:4: field 'question': must be a string, got int" in text
    assert "7 invalid records" in text


def test_preference_errors(tmp_path: Path) -> None:
    path = write(
        tmp_path / "prefs.jsonl",
        [
            json.dumps({"prompt": "q", "chosen": "a", "rejected": "b"}),
            json.dumps({"prompt": "q", "chosen": "a"}),
            json.dumps({"prompt": "q", "chosen": "a", "rejected": ["b"]}),
            json.dumps({"prompt": "q", "chosen": "same", "rejected": "same"}),
            json.dumps({"prompt": [{"role": "user", "content": "q"}], "chosen": "a", "rejected": "b", "topic_id": "u/c/t"}),
        ],
    )
    with pytest.raises(DataValidationError) as info:
        load_preference_jsonl(path)
    by_line = {(i.line, i.field) for i in info.value.issues}
    # a list is a conversational completion (TRL): its bad item is named
    assert by_line == {(2, "rejected"), (3, "rejected[0]"), (4, "rejected")}


def test_parse_from_dicts_has_line_numbers() -> None:
    with pytest.raises(DataValidationError) as info:
        parse_sft_records([{"question": "q", "answer": "a"}, {"question": "q", "answer": ""}], "topic u/c/t")
    assert info.value.line == 2 and info.value.field == "answer"
    assert str(info.value).startswith("topic u/c/t:2:")


def test_empty_list_is_an_error() -> None:
    with pytest.raises(DataValidationError, match="no records"):
        parse_sft_records([])


class CharTokenizer:
    """A stdlib tokenizer without a chat template (exercises the no-template path of the protocol)."""

    eos_token_id: int | None = 1
    pad_token_id: int | None = 0
    bos_token_id: int | None = 2
    has_chat_template = False

    def encode(self, text: str, *, add_special_tokens: bool = False) -> list[int]:
        return [ord(c) + 3 for c in text]

    def decode(self, token_ids: Sequence[int], *, skip_special_tokens: bool = True) -> str:
        return "".join(chr(t - 3) for t in token_ids if t >= 3)

    def apply_chat_template(self, messages: Sequence[Mapping[str, object]], *, add_generation_prompt: bool = False) -> str:
        raise AssertionError("no template")


def test_no_template_masks_prompt_and_appends_eos() -> None:
    tok = CharTokenizer()
    data = tokenize_sft(tok, parse_sft_records([{"question": "ab", "answer": "cd"}]), max_length=64)
    [ex] = data.examples
    assert ex.input_ids == (2, *tok.encode("ab\n"), *tok.encode("cd"), 1)
    assert ex.labels == (IGNORE_INDEX,) * 4 + (*tok.encode("cd"), 1)


def test_truncation_policies() -> None:
    tok = CharTokenizer()
    records = parse_sft_records([{"question": "q", "answer": "x" * 50}, {"question": "q" * 60, "answer": "a"}])
    cut = tokenize_sft(tok, records, max_length=20)
    assert cut.truncated == 1 and len(cut.examples) == 1 and len(cut.examples[0].input_ids) == 20
    assert [d.line for d in cut.dropped] == [2]  # no completion token left
    short = parse_sft_records([{"question": "q", "answer": "a"}, {"question": "q", "answer": "x" * 50}])
    dropped = tokenize_sft(tok, short, max_length=20, truncation="drop")
    assert [len(e.input_ids) for e in dropped.examples] == [5]  # bos, "q", "\n", "a", eos
    assert [d.line for d in dropped.dropped] == [2] and dropped.truncated == 0
    with pytest.raises(DataValidationError) as info:
        tokenize_sft(tok, records, max_length=20, truncation="error", source="sft.jsonl")
    assert {i.line for i in info.value.issues} == {1, 2}


def test_chat_template_masks_exactly_the_assistant_turns(tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    tok = HFTokenizer(AutoTokenizer.from_pretrained(str(tiny_model_dir)))
    records = parse_sft_records([{"messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "Bye"},
        {"role": "assistant", "content": "Goodbye"},
    ]}])
    [ex] = tokenize_sft(tok, records, max_length=512).examples
    full = tok.decode(ex.input_ids, skip_special_tokens=False)
    assert full == tok.apply_chat_template(records[0].messages)
    trained = tok.decode([t for t in ex.labels if t != IGNORE_INDEX], skip_special_tokens=False)
    assert trained == "Hello<|im_end|>\nGoodbye<|im_end|>\n"


def test_preference_tokens_share_the_prompt(tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    from mindprint_interfaces.data import parse_preference_records

    tok = HFTokenizer(AutoTokenizer.from_pretrained(str(tiny_model_dir)))
    pairs = parse_preference_records([{"prompt": "What is two plus two?", "chosen": "Four.", "rejected": "Five."}])
    [p] = tokenize_preferences(tok, pairs, max_length=256).examples
    assert tok.decode(p.prompt_ids, skip_special_tokens=False).endswith("<|im_start|>assistant\n")
    assert tok.decode(p.chosen_ids, skip_special_tokens=False) == "Four.<|im_end|>\n"
    assert tok.decode(p.rejected_ids, skip_special_tokens=False) == "Five.<|im_end|>\n"


def test_jsonl_bom_duplicates_and_bad_bytes(tmp_path: Path) -> None:  # #20
    from mindprint_interfaces.data import read_jsonl
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(b'\xef\xbb\xbf{"instruction": "q", "output": "a"}\n')
    assert read_jsonl(bom) == [(1, {"instruction": "q", "output": "a"})]
    dup = tmp_path / "dup.jsonl"
    dup.write_text('{"instruction": "q", "output": "a"}\n{"instruction": "q", "output": "a", "output": "b"}\n')
    with pytest.raises(DataValidationError) as info:
        read_jsonl(dup)
    [issue] = info.value.issues
    assert issue.line == 2 and issue.field == "output" and "appears twice" in issue.reason
    bad = tmp_path / "latin1.jsonl"
    bad.write_bytes(b'{"instruction": "q", "output": "a"}\n{"instruction": "caf\xe9", "output": "a"}\n')
    with pytest.raises(DataValidationError) as info:
        read_jsonl(bad)
    assert info.value.issues[0].line == 2 and "not UTF-8" in info.value.issues[0].reason
