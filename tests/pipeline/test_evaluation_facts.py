"""The default evaluator scores a wrong fact as inaccurate (ROUGE overlap alone rewards it)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from mindprint_interfaces import Generation
from mindprint_interfaces.data import parse_quiz_records
from mindprint_pipeline import DefaultEvaluator, VoiceMarkers, rouge_l_f1
from mindprint_pipeline.curriculum import build_curriculum
from mindprint_pipeline.evaluation import FACT_WEIGHT, answer_accuracy

REFERENCE = "Jupiter is the largest planet, a giant ball of gas."
RECORD = {"question": "Which planet is the largest?", "answer": REFERENCE, "topic_id": "space/solar-system/planets",
          "must_include": ["Jupiter"], "must_not_include": ["Mercury", "Saturn"]}
WRONG = "Mercury is the largest planet, a giant ball of gas."
RIGHT_SHORT = "It is Jupiter."


class CannedAnswers:
    """Stands in for a model's ``generate``: a real model cannot be made to say a chosen wrong fact."""

    backend_name = "canned"

    def __init__(self, answers: dict[str, str]) -> None:
        self.answers = answers

    def generate(self, prompt: Sequence[Any], config: Any = None, **_: Any) -> Generation:
        return Generation(self.answers[prompt[-1]["content"]], (), "stop")


def test_wrong_fact_scores_zero_though_rouge_rewards_it() -> None:
    (quiz,) = parse_quiz_records([RECORD])
    assert rouge_l_f1(WRONG, REFERENCE) > 0.85  # what ROUGE-only scoring reported as accurate
    acc, fact = answer_accuracy(WRONG, REFERENCE, quiz.facts)
    assert (acc, fact) == (0.0, 0.0)
    acc_right, fact_right = answer_accuracy(RIGHT_SHORT, REFERENCE, quiz.facts)
    assert fact_right == 1.0
    assert acc_right == pytest.approx(FACT_WEIGHT + (1 - FACT_WEIGHT) * rouge_l_f1(RIGHT_SHORT, REFERENCE))
    assert acc_right > 0.5 > rouge_l_f1(RIGHT_SHORT, REFERENCE)  # the right fact in few words beats the wrong one
    assert answer_accuracy(WRONG, REFERENCE, None) == (rouge_l_f1(WRONG, REFERENCE), None)  # no facts: ROUGE


def test_evaluator_reads_facts_from_records_and_reports_them() -> None:
    other = {"question": "What is the moon?", "answer": "The moon is a rocky ball.", "topic_id": RECORD["topic_id"]}
    evaluator = DefaultEvaluator(VoiceMarkers({"friend": 1.0}))
    wrong = evaluator.evaluate(CannedAnswers({RECORD["question"]: WRONG, other["question"]: "The moon is a rocky ball."}),
                               [RECORD, other])
    assert wrong["accuracy"] == pytest.approx(0.5)  # 0 for the wrong fact, 1 for the fact-free exact answer
    assert wrong["facts"] == 0.0 and wrong["facts_measured"] == 1.0
    assert evaluator.last_outputs[0]["wrong"] == ["Mercury"] and evaluator.last_outputs[0]["facts"] == 0.0
    assert "facts" not in evaluator.last_outputs[1]
    right = evaluator.evaluate(CannedAnswers({RECORD["question"]: f"Great, friend! {REFERENCE}"}), [RECORD])
    assert right["facts"] == 1.0 and right["accuracy"] > 0.9 and right["voice"] == 1.0
    plain = evaluator.evaluate(CannedAnswers({other["question"]: "a rocky ball"}), [other])
    assert plain["facts_measured"] == 0.0 and plain["facts"] == 1.0


def test_curriculum_hands_the_quiz_facts_to_the_evaluator() -> None:
    from mindprint_interfaces.data import parse_sft_records

    sft = parse_sft_records([{"question": "q", "answer": "a", "topic_id": RECORD["topic_id"]}])
    curriculum = build_curriculum(sft, quiz=parse_quiz_records([RECORD]))
    (record,) = curriculum.topics[0].eval_records()
    assert record["must_include"] == ["Jupiter"] and record["must_not_include"] == ["Mercury", "Saturn"]
    scores = DefaultEvaluator().evaluate(CannedAnswers({RECORD["question"]: WRONG}), [record])
    assert scores["accuracy"] == 0.0
