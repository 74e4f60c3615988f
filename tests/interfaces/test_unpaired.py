"""KTO records: {prompt, completion, label}; preference files unpaired in TRL's order; file:line:field errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mindprint_interfaces import DataValidationError
from mindprint_interfaces.data import (
    load_unpaired_jsonl,
    parse_unpaired_records,
    tokenize_unpaired,
    unpair,
)
from mindprint_interfaces.data.validate import parse_preference_records

PAIRS = [{"prompt": f"q{i}", "chosen": f"good {i}", "rejected": f"bad {i}"} for i in range(3)]


def test_unpaired_records_parse_with_messages_prompts() -> None:
    out = parse_unpaired_records([
        {"prompt": "What is 2+2?", "completion": "Four.", "label": True, "topic_id": "u/c/t"},
        {"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
         "completion": "Go away.", "label": False},
    ])
    assert [(e.completion, e.label, e.topic_id) for e in out] == [("Four.", True, "u/c/t"), ("Go away.", False, None)]
    assert out[1].prompt[0]["role"] == "system"


def test_bad_lines_name_file_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "kto.jsonl"
    lines = [{"prompt": "a", "completion": "b", "label": True}, {"prompt": "a", "completion": "b", "label": 1},
             {"prompt": "a", "label": False}, {"prompt": "", "completion": "b", "label": True}]
    path.write_text("".join(json.dumps(x) + "\n" for x in lines) + "{not json\n")
    with pytest.raises(DataValidationError) as err:
        load_unpaired_jsonl(path)
    text = str(err.value)
    assert f"{path}:2: field 'label': must be true or false, got 1" in text
    assert f"{path}:3: field 'completion': missing" in text
    assert f"{path}:4: field 'prompt': is empty" in text
    assert f"{path}:5" in text


def test_paired_records_are_unpaired_as_trl_does() -> None:
    from datasets import Dataset
    from trl.data_utils import unpair_preference_dataset

    ours = parse_unpaired_records(PAIRS)
    theirs = unpair_preference_dataset(Dataset.from_list(PAIRS))
    assert [(e.prompt[-1]["content"], e.completion, e.label) for e in ours] == [
        (r["prompt"], r["completion"], r["label"]) for r in theirs]
    assert unpair(parse_preference_records(PAIRS)) == ours


def test_a_pair_with_an_error_is_reported_on_its_line() -> None:
    with pytest.raises(DataValidationError, match="rejected"):
        parse_unpaired_records([PAIRS[0], {"prompt": "q", "chosen": "x", "rejected": "x"}])


def test_tokenize_cuts_drops_or_raises(tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    from mindprint_interfaces import HFTokenizer

    tok = HFTokenizer(AutoTokenizer.from_pretrained(str(tiny_model_dir)))
    examples = parse_unpaired_records([{"prompt": "q", "completion": "a long completion " * 20, "label": True}])
    full = tokenize_unpaired(tok, examples, max_length=4096).examples[0]
    limit = len(full.prompt_ids) + 3
    cut = tokenize_unpaired(tok, examples, max_length=limit)
    assert cut.truncated == 1 and len(cut.examples[0].completion_ids) == 3
    with pytest.raises(DataValidationError, match="exceed max_length"):
        tokenize_unpaired(tok, examples, max_length=limit, truncation="error")
    with pytest.raises(DataValidationError):
        tokenize_unpaired(tok, examples, max_length=limit, truncation="drop")
