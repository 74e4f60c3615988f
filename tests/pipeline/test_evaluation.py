from __future__ import annotations

import json
from pathlib import Path

import pytest

from mindprint_interfaces import ConfigError
from mindprint_pipeline import VoiceMarkers, rouge_l_f1
from mindprint_pipeline.evaluation import check_scores, lcs_length, word_tokens


def test_word_tokens_lowercase_and_split_punctuation() -> None:
    assert word_tokens("The capital, of FRANCE is Paris!") == ["the", "capital", "of", "france", "is", "paris"]


def test_lcs() -> None:
    assert lcs_length(["a", "b", "c", "d"], ["a", "c", "d"]) == 3
    assert lcs_length([], ["a"]) == 0
    assert lcs_length(["x", "y"], ["a", "b"]) == 0


def test_rouge_l_f1_values() -> None:
    assert rouge_l_f1("The capital of France is Paris.", "the capital of france is paris") == 1.0
    assert rouge_l_f1("", "") == 1.0
    assert rouge_l_f1("", "paris") == 0.0
    assert rouge_l_f1("banana", "paris") == 0.0
    # candidate "paris is the capital" vs reference "the capital is paris": LCS = 2 ("the capital" or "is paris")
    assert rouge_l_f1("paris is the capital", "the capital is paris") == pytest.approx(0.5)
    # precision 3/3, recall 3/6 -> F1 = 2/3
    assert rouge_l_f1("capital is paris", "the capital of france is paris") == pytest.approx(2 / 3)


def test_voice_markers_score_and_clamp() -> None:
    m = VoiceMarkers({"kindly": 0.6, "briefly": 0.4, "as an ai": -1.0})
    assert m.score("Answer kindly.") == pytest.approx(0.6)
    assert m.score("KINDLY and briefly") == pytest.approx(1.0)
    assert m.score("kindly, briefly, kindly") == pytest.approx(1.0)  # a marker counts once
    assert m.score("As an  AI, kindly") == 0.0  # clamped at 0
    assert m.score("unkindly") == 0.0  # whole words at the edges
    assert VoiceMarkers({"kindly": 1.0}, target=2.0).score("kindly") == pytest.approx(0.5)


def test_voice_markers_json_formats(tmp_path: Path) -> None:
    a = tmp_path / "a.json"
    a.write_text(json.dumps({"markers": {"hey": 0.5}, "target": 0.5}))
    assert VoiceMarkers.load(a) == VoiceMarkers({"hey": 0.5}, 0.5)
    b = tmp_path / "b.json"
    b.write_text(json.dumps({"hey": 1}))
    assert VoiceMarkers.load(b).markers == {"hey": 1.0}
    c = tmp_path / "c.json"
    c.write_text(json.dumps({"markers": [{"phrase": "hey", "weight": 0.3}, {"phrase": "yo"}]}))
    assert VoiceMarkers.load(c).markers == {"hey": 0.3, "yo": 1.0}


def test_voice_markers_text_format(tmp_path: Path) -> None:
    p = tmp_path / "markers.txt"
    p.write_text("# my voice\nkindly | 0.5\n\nof course\nas an AI | -1\n")
    assert VoiceMarkers.load(p).markers == {"kindly": 0.5, "of course": 1.0, "as an AI": -1.0}


def test_voice_markers_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        VoiceMarkers.load(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"markers": {"x": "heavy"}}))
    with pytest.raises(ConfigError, match="numeric weight"):
        VoiceMarkers.load(bad)
    bad.write_text("{oops")
    with pytest.raises(ConfigError, match="invalid JSON"):
        VoiceMarkers.load(bad)
    txt = tmp_path / "bad.txt"
    txt.write_text("kindly | lots\n")
    with pytest.raises(ConfigError, match="line 1"):
        VoiceMarkers.load(txt)
    with pytest.raises(ConfigError, match="target"):
        VoiceMarkers({"a": 1.0}, target=0)


def test_bundled_markers_file_loads() -> None:
    m = VoiceMarkers.load(Path(__file__).parent / "data" / "markers.json")
    assert m.enabled and m.markers["kindly"] == 0.6


def test_check_scores_validates_evaluator_output() -> None:
    ev = object()
    assert check_scores({"accuracy": 0.5, "voice": 1.0}, ev) == (0.5, 1.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no 'voice'"):
        check_scores({"accuracy": 0.5}, ev)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="outside"):
        check_scores({"accuracy": 1.5, "voice": 0.0}, ev)  # type: ignore[arg-type]
