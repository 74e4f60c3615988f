"""The truncation line names the longest record where the user finds it: file:line, or the dataset row."""

from __future__ import annotations

from mindprint_trainer.truncation import truncation_note


def test_jsonl_source_names_file_and_line() -> None:
    note = truncation_note({"truncated": 2, "truncated_longest_line": 7, "truncated_longest_chars": 900}, 64,
                           "data/sft.jsonl")
    assert note == ("data/sft.jsonl: 2 records longer than max_length=64 were truncated; "
                    "longest: data/sft.jsonl:7, 900 characters")


def test_dataset_source_names_the_zero_based_row() -> None:
    note = truncation_note({"truncated": 1, "truncated_longest_line": 7, "truncated_longest_chars": 900}, 64,
                           "org/dataset (train split)")
    assert note is not None and note.endswith("longest: row 6, 900 characters")


def test_nothing_cut_is_no_note() -> None:
    assert truncation_note({"truncated": 0, "dropped": 0}, 64, "a.jsonl") is None
