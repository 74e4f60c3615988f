"""The demo's per-topic before/after scores: a wrong fact after training shows as facts lost."""

from __future__ import annotations

from mindprint_interfaces.data import parse_quiz_records
from mindprint_pipeline import DefaultEvaluator, VoiceMarkers
from mindprint_trainer.demo import before_after_scores, demo_data_dir

RECORDS = [
    {"question": "Which planet is the largest?", "answer": "Jupiter is the largest planet.", "topic_id": "s/s/p",
     "must_include": ["Jupiter"], "must_not_include": ["Mercury"]},
    {"question": "Why does the moon shine?", "answer": "It reflects sunlight.", "topic_id": "s/s/m",
     "must_include": ["reflects"]},
]


def test_facts_before_vs_after_per_topic() -> None:
    quiz = parse_quiz_records(RECORDS)
    scorer = DefaultEvaluator(VoiceMarkers({"friend": 1.0}))
    answers = [("Jupiter is big.", "Friend, Mercury is the largest planet."), ("No idea.", "It reflects sunlight, friend.")]
    rows = [{"scores_before": scorer.score_answer(ex, b), "scores_after": scorer.score_answer(ex, a)}
            for ex, (b, a) in zip(quiz, answers)]
    per_topic = before_after_scores(quiz, rows)
    assert per_topic["s/s/p"]["facts_before"] == 1.0 and per_topic["s/s/p"]["facts_after"] == 0.0  # facts lost
    assert per_topic["s/s/p"]["voice_after"] == 1.0 and per_topic["s/s/p"]["accuracy_after"] == 0.0
    assert per_topic["s/s/m"]["facts_before"] == 0.0 and per_topic["s/s/m"]["facts_after"] == 1.0


def test_bundled_quiz_has_facts_for_every_question() -> None:
    from mindprint_interfaces.data import load_quiz_jsonl

    quiz = load_quiz_jsonl(demo_data_dir() / "quiz.jsonl")
    assert len(quiz) == 8 and all(q.facts.must_include and q.facts.must_not_include for q in quiz)
    largest = next(q for q in quiz if "biggest planet" in q.messages[-2]["content"])
    assert largest.facts.score("Mercury is the largest planet, a giant ball of gas.") == 0.0


def test_bundled_quiz_is_held_out_and_taught() -> None:
    """No quiz question is a training prompt verbatim, and every key fact it checks is taught by an SFT record
    of its topic (so "facts kept" measures what the curriculum teaches, on questions it did not train on)."""
    from mindprint_interfaces.data import load_preference_jsonl, load_quiz_jsonl, load_sft_jsonl
    from mindprint_interfaces.data.quiz import contains_term

    data = demo_data_dir()
    sft = load_sft_jsonl(data / "sft_data.jsonl")
    prompts = {ex.messages[-2]["content"].strip().lower() for ex in sft}
    prompts |= {p.prompt[-1]["content"].strip().lower() for p in load_preference_jsonl(data / "preference_data.jsonl")}
    for q in load_quiz_jsonl(data / "quiz.jsonl"):
        question = q.messages[-2]["content"]
        assert question.strip().lower() not in prompts, question
        taught = [ex.messages[-1]["content"] for ex in sft if ex.topic_id == q.topic_id]
        for alternatives in q.facts.must_include:
            assert any(contains_term(t, a) for t in taught for a in alternatives), (question, alternatives)
