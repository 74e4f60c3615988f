"""Why a topic failed, in one line: which threshold, which score (for summary.md and the console).

The scores are the pipeline's own: measured by the evaluator on the topic's quiz (or SFT) answers of the
model right after *that topic's* training, not on the final model after the whole curriculum.
"""

from __future__ import annotations

from typing import Any, Protocol


class Thresholds(Protocol):
    accuracy_threshold: float
    dpo_trigger_threshold: float
    topic_pass_threshold: float
    sft_before_preference: bool


def failure_note(topic: Any, thresholds: Thresholds, *, has_pairs: bool = True) -> str:
    """One sentence for a failed topic (``TopicProgress``); "" for a passed or pending one."""
    if str(getattr(topic, "status", "")) != "failed":
        return ""
    history = list(getattr(topic, "history", []))
    trained = [h for h in history if h.adapter_path is not None]
    if not trained:
        error = getattr(topic, "error", None) or (history[-1].error if history else None)
        return f"no attempt could train ({error or 'unknown error'})"
    best = max(trained, key=lambda h: h.score)
    t = thresholds
    stage = str(getattr(t, "preference_method", "dpo")).upper()  # the preference stage under its own name
    parts = [f"score (accuracy {best.accuracy:.2f} + voice {best.voice:.2f}) / 2 = {best.score:.2f} "
             f"< topic_pass_threshold {t.topic_pass_threshold:.2f}"]
    facts = best.metrics.get("facts_measured", 0.0)
    if facts:
        parts.append(f"facts right {best.metrics.get('facts', 0.0):.2f} (of {int(facts)} quiz answers with facts)")
    if best.dpo_applied:
        parts.append(f"{stage} ran: voice {best.voice_after_sft:.2f} after SFT -> {best.voice:.2f}, "
                     f"accuracy {best.accuracy_after_sft:.2f} -> {best.accuracy:.2f}")
    elif t.sft_before_preference:
        if not has_pairs:
            parts.append(f"{stage} did not run: the topic has no preference pairs")
        elif best.accuracy_after_sft < t.accuracy_threshold:
            parts.append(f"{stage} did not run: accuracy after SFT {best.accuracy_after_sft:.2f} "
                         f"< accuracy_threshold {t.accuracy_threshold:.2f}")
        elif best.voice_after_sft >= t.dpo_trigger_threshold:
            parts.append(f"{stage} did not run: voice after SFT {best.voice_after_sft:.2f} "
                         f">= dpo_trigger_threshold {t.dpo_trigger_threshold:.2f}")
    if len(history) > 1:
        parts.append(f"best of {len(history)} attempts")
    return "; ".join(parts)
