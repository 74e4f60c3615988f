"""Topic evaluation: the :class:`Evaluator` protocol and the offline default evaluator.

The default evaluator generates an answer for every evaluation record through
``Model.generate`` (greedy, so both backends behave the same) and scores:

- ``accuracy``: per record, ROUGE-L F1 (longest common subsequence over lowercase word tokens) of the
  generated answer against the record's reference answer; for a quiz record carrying key facts
  (``must_include`` / ``must_not_include``, see :mod:`mindprint_interfaces.data.quiz`) the fact score
  gates it: ``facts * (FACT_WEIGHT + (1 - FACT_WEIGHT) * rouge)``, so a wrong fact ("Mercury is the
  largest planet") scores 0 however many words it shares with the reference, and an answer with every
  fact right scores at least ``FACT_WEIGHT``. Averaged over records;
- ``facts``: the fact score averaged over the records that carry facts (``facts_measured`` is their
  number; 0 when none does, and ``facts`` is then reported as 1.0);
- ``voice``: the weighted voice-marker score of the generated answer (see :class:`VoiceMarkers`),
  averaged over records.

Records are anything the data layer accepts as SFT records (``question``/``answer``,
``instruction``/``output``, ``prompt``/``completion`` or ``messages``): a topic can be evaluated
on its own SFT records or on explicit quiz records.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mindprint_interfaces import ConfigError, Evaluator, GenerationConfig, Model
from mindprint_interfaces.data import QuizExample, QuizFacts, as_quiz_examples
from mindprint_interfaces.phases import phase

__all__ = ["FACT_WEIGHT", "DefaultEvaluator", "Evaluator", "VoiceMarkers", "answer_accuracy", "lcs_length",
           "rouge_l_f1", "word_tokens"]

FACT_WEIGHT = 0.5  # the share of a quiz answer's accuracy that its facts alone earn (overlap earns the rest)

log = logging.getLogger("mindprint_pipeline")

_WORD = re.compile(r"\w+", re.UNICODE)


def word_tokens(text: str) -> list[str]:
    """Lowercase word tokens (letters, digits, underscore); punctuation and whitespace split."""
    return _WORD.findall(text.lower())


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence (O(len(a) * len(b)) time, O(len(b)) memory)."""
    if not a or not b:
        return 0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0] * (len(b) + 1)
        for j, y in enumerate(b, start=1):
            cur[j] = prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1])
        prev = cur
    return prev[-1]


def rouge_l_f1(candidate: str, reference: str) -> float:
    """ROUGE-L F1 between two texts on lowercase word tokens (1.0 = identical word sequences)."""
    cand, ref = word_tokens(candidate), word_tokens(reference)
    if not cand and not ref:
        return 1.0
    lcs = lcs_length(cand, ref)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(cand), lcs / len(ref)
    return 2 * precision * recall / (precision + recall)


@dataclass(frozen=True)
class VoiceMarkers:
    """Weighted phrases that signal the target voice; negative weights penalise (e.g. "as an AI").

    A text's voice score is ``clamp(sum(weight of every marker it contains) / target, 0, 1)``:
    with the default ``target=1.0`` the weights read as "fraction of the full voice score".
    Matching is case-insensitive, on whole words at the marker's word edges, with whitespace collapsed.

    File formats (:meth:`load`):

    - JSON: ``{"markers": {"phrase": weight, ...}, "target": 1.0}`` or just ``{"phrase": weight}``,
      or ``{"markers": [{"phrase": ..., "weight": ...}, ...]}``;
    - text (any other suffix): one marker per line, ``phrase`` (weight 1) or ``phrase | weight``;
      blank lines and lines starting with ``#`` are ignored.
    """

    markers: Mapping[str, float] = field(default_factory=dict)
    target: float = 1.0

    def __post_init__(self) -> None:
        if not self.target > 0:
            raise ConfigError(f"voice markers: target must be > 0, got {self.target}", key="target")
        for phrase in self.markers:
            if not phrase.strip():
                raise ConfigError("voice markers: empty marker phrase", key="markers")

    @property
    def enabled(self) -> bool:
        return bool(self.markers)

    def hits(self, text: str) -> dict[str, float]:
        norm = " " + re.sub(r"\s+", " ", text.lower()) + " "
        found: dict[str, float] = {}
        for phrase, weight in self.markers.items():
            if _pattern(phrase).search(norm):
                found[phrase] = weight
        return found

    def score(self, text: str) -> float:
        total = sum(self.hits(text).values())
        return min(1.0, max(0.0, total / self.target))

    @classmethod
    def load(cls, path: str | Path) -> VoiceMarkers:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"markers_file: {p} not found", key="markers_file")
        text = p.read_text(encoding="utf-8")
        if p.suffix.lower() == ".json":
            return cls.from_json(text, source=str(p))
        return cls.from_text(text, source=str(p))

    @classmethod
    def from_json(cls, text: str, *, source: str = "<markers>") -> VoiceMarkers:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"invalid JSON: {exc.msg} (line {exc.lineno})", key="markers_file", source=source) from None
        if not isinstance(data, dict):
            raise ConfigError("expected a JSON object", key="markers_file", source=source)
        target = data.get("target", 1.0) if "markers" in data else 1.0
        raw = data.get("markers", data)
        markers: dict[str, float] = {}
        items: list[tuple[Any, Any]]
        if isinstance(raw, dict):
            items = list(raw.items())
        elif isinstance(raw, list):
            items = []
            for i, entry in enumerate(raw):
                if not isinstance(entry, dict) or "phrase" not in entry:
                    raise ConfigError(f"markers[{i}]: expected {{\"phrase\": ..., \"weight\": ...}}",
                                      key=f"markers[{i}]", source=source)
                items.append((entry["phrase"], entry.get("weight", 1.0)))
        else:
            raise ConfigError("markers: expected an object or a list", key="markers", source=source)
        for phrase, weight in items:
            if not isinstance(phrase, str) or isinstance(weight, bool) or not isinstance(weight, (int, float)):
                raise ConfigError(f"marker {phrase!r}: expected a phrase and a numeric weight, got {weight!r}",
                                  key="markers", source=source)
            markers[phrase] = float(weight)
        if isinstance(target, bool) or not isinstance(target, (int, float)):
            raise ConfigError(f"target: expected a number, got {target!r}", key="target", source=source)
        return cls(markers, float(target))

    @classmethod
    def from_text(cls, text: str, *, source: str = "<markers>") -> VoiceMarkers:
        markers: dict[str, float] = {}
        for number, line in enumerate(text.splitlines(), start=1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            phrase, sep, weight_text = line.rpartition("|")
            if not sep:
                phrase, weight_text = line, "1"
            try:
                weight = float(weight_text)
            except ValueError:
                raise ConfigError(f"line {number}: weight {weight_text.strip()!r} is not a number",
                                  key="markers_file", source=source) from None
            markers[phrase.strip()] = weight
        return cls(markers)


def answer_accuracy(generated: str, reference: str, facts: QuizFacts | None = None) -> tuple[float, float | None]:
    """``(accuracy, fact score)`` of one answer: ROUGE-L F1 alone without facts (fact score None), else
    ``facts * (FACT_WEIGHT + (1 - FACT_WEIGHT) * rouge)``."""
    rouge = rouge_l_f1(generated, reference)
    if facts is None or not facts.enabled:
        return rouge, None
    fact = facts.score(generated)
    return fact * (FACT_WEIGHT + (1.0 - FACT_WEIGHT) * rouge), fact


def _pattern(phrase: str) -> re.Pattern[str]:
    body = re.escape(re.sub(r"\s+", " ", phrase.strip().lower()))
    start = r"(?<!\w)" if re.match(r"\w", phrase.strip()) else ""
    end = r"(?!\w)" if re.search(r"\w$", phrase.strip()) else ""
    return re.compile(start + body + end)


@dataclass
class DefaultEvaluator:
    """Offline evaluator: accuracy (ROUGE-L, gated by the quiz's key facts where given) + voice-marker score.

    Without markers the voice is not measured and reported as 1.0 (so DPO, which is triggered by
    a low voice score, does not run, and passing depends on accuracy alone); ``voice_measured``
    in the returned metrics is 0.0 then.
    """

    markers: VoiceMarkers = field(default_factory=VoiceMarkers)
    generation: GenerationConfig = field(default_factory=lambda: GenerationConfig(max_new_tokens=64))
    max_records: int | None = None
    last_outputs: list[dict[str, Any]] = field(default_factory=list, repr=False)  # the last evaluation's answers

    @classmethod
    def from_files(cls, markers_file: str | Path | None, *, generation: GenerationConfig | None = None,
                   max_records: int | None = None) -> DefaultEvaluator:
        markers = VoiceMarkers.load(markers_file) if markers_file else VoiceMarkers()
        return cls(markers, generation or GenerationConfig(max_new_tokens=64), max_records)

    def evaluate(self, model: Model, records: Sequence[Mapping[str, Any]]) -> dict[str, float]:
        examples = _examples(records)
        if self.max_records is not None:
            examples = examples[: self.max_records]
        accuracies: list[float] = []
        voices: list[float] = []
        facts: list[float] = []
        self.last_outputs = []
        with phase("answer questions", total=len(examples)) as answering:
            for ex in examples:
                generated = model.generate(ex.prompt_messages, self.generation).text.strip()
                self.last_outputs.append(self.score_answer(ex, generated))
                out = self.last_outputs[-1]
                accuracies.append(out["accuracy"])
                voices.append(out["voice"])
                if out.get("facts") is not None:
                    facts.append(out["facts"])
                answering.advance()
        n = len(examples)
        return {
            "accuracy": sum(accuracies) / n if n else 0.0,
            "voice": sum(voices) / n if n else 0.0,
            "num_records": float(n),
            "voice_measured": 1.0 if self.markers.enabled else 0.0,
            "facts": sum(facts) / len(facts) if facts else 1.0,
            "facts_measured": float(len(facts)),
        }

    def score_answer(self, example: QuizExample, generated: str) -> dict[str, Any]:
        """The scores of one answer to one quiz (or SFT) example, with what its facts check found."""
        acc, fact = answer_accuracy(generated, example.reference_answer, example.facts)
        out: dict[str, Any] = {
            "prompt": example.prompt_messages[-1]["content"] if example.prompt_messages else "",
            "generated": generated, "reference": example.reference_answer, "accuracy": acc,
            "voice": self.markers.score(generated) if self.markers.enabled else 1.0,
            "rouge_l": rouge_l_f1(generated, example.reference_answer),
        }
        if fact is not None:
            check = example.facts.check(generated)
            out.update(facts=fact, missing=list(check.missing), wrong=list(check.wrong))
        return out


def _examples(records: Sequence[Any]) -> list[QuizExample]:
    if not records:
        return []
    return as_quiz_examples(list(records), "evaluation records")


def check_scores(scores: Mapping[str, float], evaluator: Evaluator) -> tuple[float, float]:
    """Accuracy and voice from an evaluator's result, checked to be numbers in [0, 1]."""
    out: list[float] = []
    name = type(evaluator).__name__
    for key in ("accuracy", "voice"):
        if key not in scores:
            raise ValueError(f"{name}.evaluate() returned no {key!r} (keys: {', '.join(scores) or 'none'})")
        value = float(scores[key])
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name}.evaluate() returned {key}={value}, outside [0, 1]")
        out.append(value)
    return out[0], out[1]
