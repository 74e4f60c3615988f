from __future__ import annotations

import json
from pathlib import Path

import pytest

from mindprint_interfaces import DataValidationError
from mindprint_pipeline import build_curriculum, load_curriculum
from mindprint_pipeline.curriculum import split_topic_id


def test_groups_units_chapters_topics_in_first_appearance_order(data_dir: Path) -> None:
    cur = load_curriculum(data_dir=data_dir)
    assert [u.name for u in cur.units] == ["geography", "science"]
    assert [c.id for c in cur.units[0].chapters] == ["geography/europe"]
    assert [c.id for c in cur.units[1].chapters] == ["science/biology", "science/math"]
    assert [t.id for t in cur.topics] == [
        "geography/europe/capitals", "geography/europe/curriculum",
        "science/biology/photosynthesis", "science/math/addition",
    ]
    assert [t.index for t in cur.topics] == [0, 1, 2, 3]
    capitals = cur.topic("geography/europe/capitals")
    assert len(capitals.sft) == 3  # "source" works like topic_id
    assert (capitals.unit, capitals.chapter, capitals.name) == ("geography", "europe", "capitals")


def test_preference_pairs_attach_by_topic_id_or_prompt(data_dir: Path) -> None:
    cur = load_curriculum(data_dir=data_dir)
    assert len(cur.topic("geography/europe/capitals").preferences) == 1  # prompt match
    assert len(cur.topic("geography/europe/curriculum").preferences) == 1  # topic_id
    assert len(cur.topic("science/biology/photosynthesis").preferences) == 1  # prompt match
    assert len(cur.topic("science/math/addition").preferences) == 1  # topic_id, messages prompt
    [unmatched] = cur.unmatched_preferences
    assert unmatched.prompt == "Who wrote Hamlet?"
    assert unmatched.line == 5
    assert "matches no SFT prompt" in unmatched.reason


def test_prompt_match_ignores_case_and_whitespace() -> None:
    from mindprint_interfaces.data import parse_preference_records, parse_sft_records
    sft = parse_sft_records([{"question": "What is  X?", "answer": "x", "topic_id": "u/c/t"}])
    prefs = parse_preference_records([{"prompt": "what is x? ", "chosen": "a", "rejected": "b"}])
    c = build_curriculum(sft, prefs)
    assert len(c.topic("u/c/t").preferences) == 1


def test_unknown_topic_id_on_pair_is_reported_with_suggestion() -> None:
    from mindprint_interfaces.data import parse_preference_records, parse_sft_records
    sft = parse_sft_records([{"question": "q", "answer": "a", "topic_id": "u/c/topic"}])
    prefs = parse_preference_records([{"prompt": "q", "chosen": "a", "rejected": "b", "topic_id": "u/c/topik"}])
    c = build_curriculum(sft, prefs)
    [unmatched] = c.unmatched_preferences
    assert "u/c/topic" in unmatched.reason and c.topic("u/c/topic").preferences == []


def test_records_without_topic_are_listed_in_one_error(tmp_path: Path) -> None:
    path = tmp_path / "sft.jsonl"
    rows = [
        {"question": "q1", "answer": "a1", "topic_id": "u/c/t"},
        {"question": "q2", "answer": "a2"},
        {"question": "q3", "answer": "a3", "topic_id": "only/two"},
        {"question": "q4", "answer": "a4", "source": "u//t"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataValidationError) as info:
        load_curriculum(path, [], tmp_path)
    assert [i.line for i in info.value.issues] == [2, 3, 4]
    assert "missing" in info.value.issues[0].reason
    assert "'only/two'" in info.value.issues[1].reason


def test_missing_files_are_errors(tmp_path: Path, data_dir: Path) -> None:
    with pytest.raises(DataValidationError, match="SFT data file not found"):
        load_curriculum(data_dir=tmp_path)
    (data_dir / "preference_data.jsonl").unlink()
    with pytest.raises(DataValidationError, match="preference data file not found"):
        load_curriculum(data_dir=data_dir)
    # an explicit empty list means "no DPO data"
    cur = load_curriculum(preference_data=[], data_dir=data_dir)
    assert all(not t.preferences for t in cur.topics)


def test_bad_lines_are_reported(data_dir: Path) -> None:
    path = data_dir / "sft_data.jsonl"
    path.write_text(path.read_text() + "{not json\n" + json.dumps({"question": "q", "topic_id": "a/b/c"}) + "\n")
    with pytest.raises(DataValidationError) as info:
        load_curriculum(data_dir=data_dir)
    assert [i.line for i in info.value.issues] == [10, 11]


def test_empty_sft_is_an_error(data_dir: Path) -> None:
    (data_dir / "sft_data.jsonl").write_text("")
    with pytest.raises(DataValidationError, match="empty"):
        load_curriculum(data_dir=data_dir)
    with pytest.raises(DataValidationError):
        load_curriculum(sft_data=[], data_dir=data_dir)


def test_quiz_records_replace_sft_for_evaluation(data_dir: Path) -> None:
    quiz = [{"question": "Capital of Italy?", "answer": "Rome", "topic_id": "geography/europe/capitals"}]
    cur = load_curriculum(data_dir=data_dir, quiz_data=quiz)
    t = cur.topic("geography/europe/capitals")
    assert [r["messages"][-1]["content"] for r in t.eval_records()] == ["Rome"]
    assert len(cur.topic("science/math/addition").eval_records()) == 2  # falls back to its SFT records
    with pytest.raises(DataValidationError, match="not a topic"):
        load_curriculum(data_dir=data_dir, quiz_data=[{"question": "q", "answer": "a", "topic_id": "x/y/z"}])


def test_fingerprint_is_stable_and_data_sensitive(data_dir: Path) -> None:
    a = load_curriculum(data_dir=data_dir).fingerprint()
    assert a == load_curriculum(data_dir=data_dir).fingerprint()
    path = data_dir / "sft_data.jsonl"
    path.write_text(path.read_text().replace("Paris.", "Paris!"))
    assert load_curriculum(data_dir=data_dir).fingerprint() != a


def test_split_topic_id() -> None:
    assert split_topic_id(" u / c / t ") == ("u", "c", "t")
    assert split_topic_id("/u/c/t/") == ("u", "c", "t")
    assert split_topic_id("u/c") is None
    assert split_topic_id("u/c/t/x") is None


def test_summary_mentions_unmatched(data_dir: Path) -> None:
    text = load_curriculum(data_dir=data_dir).summary()
    assert "topic capitals: 3 SFT, 1 pairs" in text
    assert "1 preference pair(s) match no topic" in text


# -- topic ids (#20) -------------------------------------------------------------------------------

def test_id_dirname_is_injective_and_keeps_plain_names() -> None:
    from mindprint_pipeline import id_dirname
    ids = ["u/c/日本", "u/c/中文", ".", "..", "_", "%2E", "a.b", "a_b", "a-b", "a/b", "a%2Fb", "x" * 300,
           "x" * 299 + "y", "geography", "Geo"]
    names = [id_dirname(i) for i in ids]
    assert len(set(names)) == len(ids)
    assert id_dirname("geography") == "geography" and id_dirname("_") == "_"
    assert all(len(n) <= 120 and n not in (".", "..") and "/" not in n and "\0" not in n for n in names)


@pytest.mark.parametrize(("topic_id", "needle"), [
    ("u/./t", "may not be '.'"),
    ("../c/t", "may not be '..'"),
    ("u/c/t\0x", "'\\x00'"),
    ("u/c/" + "t" * 300, "300 characters long"),
    ("u\\x/c/t", "'\\\\'"),
])
def test_bad_topic_ids_are_refused_with_file_and_line(tmp_path: Path, topic_id: str, needle: str) -> None:
    import json

    from mindprint_interfaces import DataValidationError
    from mindprint_pipeline import load_curriculum
    sft = tmp_path / "sft_data.jsonl"
    sft.write_text(json.dumps({"topic_id": "u/c/ok", "instruction": "q", "output": "a"}) + "\n"
                   + json.dumps({"topic_id": topic_id, "instruction": "q", "output": "a"}) + "\n")
    with pytest.raises(DataValidationError) as info:
        load_curriculum(str(sft), [])
    message = str(info.value)
    assert f"{sft}:2" in message and needle in message and len(message) < 400


def test_replay_records_round_robin_from_the_first_topic() -> None:
    from mindprint_interfaces.data import parse_sft_records
    rows = [{"question": f"{t} q{i}", "answer": f"{t} a{i}", "topic_id": f"u/c/{t}"}
            for t, n in (("a", 3), ("b", 1), ("c", 2), ("d", 1)) for i in range(n)]
    c = build_curriculum(parse_sft_records(rows))

    def replayed(topic: str, limit: int) -> list[str]:
        return [r["messages"][0]["content"] for r in c.replay_records(c.topic(f"u/c/{topic}"), limit)]

    assert replayed("a", 5) == []  # nothing before the first topic
    assert replayed("b", 2) == ["a q0", "a q1"]
    assert replayed("d", 5) == ["a q0", "b q0", "c q0", "a q1", "c q1"]  # first records first, oldest topic first
    assert replayed("d", 10) == ["a q0", "b q0", "c q0", "a q1", "c q1", "a q2"]  # all there is
    assert all(r["topic_id"] == "u/c/a" for r in c.replay_records(c.topic("u/c/b"), 3))  # they keep their own topic
