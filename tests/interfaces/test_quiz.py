"""Quiz records with key facts: the record format, its validation (file:line:field) and the fact score."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mindprint_interfaces import DataValidationError
from mindprint_interfaces.data import (
    QuizExample,
    QuizFacts,
    as_quiz_examples,
    load_quiz_jsonl,
    parse_quiz_records,
)

LARGEST = {"question": "Which planet is the largest?", "answer": "Jupiter is the largest planet, a giant ball of gas.",
           "topic_id": "space/solar-system/planets"}


def write(path: Path, records: list[object]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records), encoding="utf-8")
    return path


def test_facts_are_read_with_alternatives(tmp_path: Path) -> None:
    path = write(tmp_path / "quiz.jsonl", [
        {**LARGEST, "must_include": ["Jupiter", ["giant", "huge"]], "must_not_include": ["Saturn", "Mercury"]},
        {"question": "q", "answer": "a", "topic_id": "u/c/t"},
    ])
    first, plain = load_quiz_jsonl(path)
    assert isinstance(first, QuizExample) and first.line == 1 and first.topic_id == LARGEST["topic_id"]
    assert first.facts == QuizFacts((("Jupiter",), ("giant", "huge")), ("Saturn", "Mercury"))
    assert first.facts.to_record() == {"must_include": ["Jupiter", ["giant", "huge"]],
                                       "must_not_include": ["Saturn", "Mercury"]}
    assert not plain.facts.enabled and plain.facts.to_record() == {}
    # the record fields give the same facts back (what the curriculum hands the evaluator)
    again = parse_quiz_records([{**LARGEST, **first.facts.to_record()}])[0]
    assert again.facts == first.facts


def test_fact_score_wrong_term_zeroes_and_required_terms_count() -> None:
    facts = QuizFacts((("Jupiter",), ("gas", "gaseous")), ("Saturn", "Mercury"))
    assert facts.score("Jupiter is the largest planet, made of gas.") == 1.0
    assert facts.score("JUPITER, a gaseous giant") == 1.0  # case-insensitive, any alternative
    assert facts.score("Jupiter is the largest planet.") == 0.5
    assert facts.score("Mercury is the largest planet, a giant ball of gas.") == 0.0
    assert facts.score("Jupiter and Saturn are big, made of gas") == 0.0  # a wrong term anywhere
    assert facts.score("Jupiterian gasses") == 0.0  # whole words at the term's edges
    check = facts.check("Saturn is the largest")
    assert check.wrong == ("Saturn",) and check.missing == ("Jupiter", "gas") and check.found == ()
    assert QuizFacts((), ("Venus",)).score("anything else") == 1.0


def test_every_bad_fact_is_reported_with_line_and_field(tmp_path: Path) -> None:
    path = write(tmp_path / "quiz.jsonl", [
        {**LARGEST, "must_include": ["Jupiter"]},  # 1 fine
        {**LARGEST, "must_include": "Jupiter"},  # 2 not a list
        {**LARGEST, "must_include": ["Jupyter"]},  # 3 a typo: not in the answer
        {**LARGEST, "must_not_include": ["Jupiter"]},  # 4 a wrong term that is the right answer
        {**LARGEST, "must_include": [["gas", 3], ""], "must_not_include": [None]},  # 5 three bad entries
        {**LARGEST, "must_include": [[]]},  # 6 an empty list of alternatives
        "{not json",  # 7
        {"question": "q", "must_include": ["q"]},  # 8 no answer (the SFT shape errors still come through)
    ])
    with pytest.raises(DataValidationError) as info:
        load_quiz_jsonl(path)
    got = {(i.line, i.field) for i in info.value.issues}
    assert got == {(2, "must_include"), (3, "must_include[0]"), (4, "must_not_include[0]"),
                   (5, "must_include[0][1]"), (5, "must_include[1]"), (5, "must_not_include[0]"),
                   (6, "must_include[0]"), (7, ""), (8, "output/answer/completion")}
    text = str(info.value)
    assert f"{path}:3: field 'must_include[0]': 'Jupyter' does not occur in the record's answer" in text
    assert f"{path}:4: field 'must_not_include[0]': 'Jupiter' occurs in the record's own answer" in text


def test_plain_sft_examples_become_fact_free_quiz_examples() -> None:
    from mindprint_interfaces.data import parse_sft_records

    sft = parse_sft_records([{"question": "q", "answer": "a"}])
    (quiz,) = as_quiz_examples(sft)
    assert quiz.messages == sft[0].messages and not quiz.facts.enabled
    with pytest.raises(DataValidationError, match="no records"):
        as_quiz_examples([])
