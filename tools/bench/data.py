"""Fixed synthetic SFT and preference sets for the benchmark (deterministic, seeded, no downloads).

Text is built from a small fixed vocabulary with ``random.Random(seed)``, so every run, every
machine and every side of a comparison sees exactly the same records. Lengths are chosen so a
sequence is roughly 100-250 tokens with the SmolLM2 chat template (its default system prompt
adds ~20 tokens); :func:`token_stats` reports the real numbers, which go into the results JSON.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

SEED = 1234
NUM_SFT = 96
NUM_PAIRS = 48

_SUBJECTS = ["the river", "a teacher", "the small robot", "my neighbour", "the old library", "a farmer",
             "the city council", "the student", "a careful writer", "the north wind", "the museum", "a young doctor"]
_VERBS = ["explains", "describes", "remembers", "questions", "builds", "measures", "protects", "changes",
          "follows", "collects", "repairs", "compares"]
_OBJECTS = ["the history of bridges", "how plants grow in winter", "a simple recipe for bread", "the rules of chess",
            "the price of fresh fruit", "why the sky looks blue", "a map of the coast", "the habits of owls",
            "the cost of building roads", "a song about the sea", "the meaning of kindness", "a plan for the garden"]
_TAILS = ["with great patience", "before the sun goes down", "in a quiet voice", "for the whole village",
          "using only a pencil", "without any help", "after a long journey", "during the cold season",
          "step by step", "in three short parts", "with a few examples", "while it keeps raining"]
_QUESTIONS = ["Can you explain", "Please describe", "Tell me briefly", "Write a short note about",
              "What do you know about", "Give me a clear summary of"]
_POLITE = ["Thank you for asking.", "Here is a short answer.", "I hope this helps.", "Let me explain it simply."]
_RUDE = ["That is obvious.", "I do not care much.", "Figure it out yourself.", "Whatever, here it is."]


def _sentence(rng: random.Random) -> str:
    return f"{rng.choice(_SUBJECTS).capitalize()} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)} {rng.choice(_TAILS)}."


def _paragraph(rng: random.Random, sentences: int) -> str:
    return " ".join(_sentence(rng) for _ in range(sentences))


def _prompt(rng: random.Random) -> str:
    return f"{rng.choice(_QUESTIONS)} {rng.choice(_OBJECTS)}? {_paragraph(rng, rng.randint(1, 3))}"


def sft_records(n: int = NUM_SFT, seed: int = SEED) -> list[dict[str, Any]]:
    """``{"instruction", "output"}`` records; prompt 1-3 sentences, answer 4-11 sentences."""
    rng = random.Random(seed)
    return [{"instruction": _prompt(rng),
             "output": f"{rng.choice(_POLITE)} {_paragraph(rng, rng.randint(4, 11))}"} for _ in range(n)]


def preference_records(n: int = NUM_PAIRS, seed: int = SEED + 1) -> list[dict[str, Any]]:
    """``{"prompt", "chosen", "rejected"}`` records; both answers 4-11 sentences, chosen polite, rejected rude."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    for _ in range(n):
        prompt = _prompt(rng)
        chosen = f"{rng.choice(_POLITE)} {_paragraph(rng, rng.randint(4, 11))}"
        rejected = f"{rng.choice(_RUDE)} {_paragraph(rng, rng.randint(4, 11))}"
        out.append({"prompt": prompt, "chosen": chosen, "rejected": rejected})
    return out


def _summary(lengths: Sequence[int]) -> dict[str, float]:
    s = sorted(lengths)
    return {"n": len(s), "min": s[0], "max": s[-1], "mean": round(sum(s) / len(s), 1), "median": s[len(s) // 2]}


def token_stats(sft: Sequence[Any], pairs: Sequence[Any]) -> dict[str, Any]:
    """Length statistics of tokenized data (``TokenizedExample`` / ``TokenizedPair`` lists)."""
    return {
        "sft_sequence_tokens": _summary([len(e.input_ids) for e in sft]),
        "sft_loss_tokens": _summary([e.num_loss_tokens for e in sft]),
        "dpo_chosen_sequence_tokens": _summary([len(p.prompt_ids) + len(p.chosen_ids) for p in pairs]),
        "dpo_rejected_sequence_tokens": _summary([len(p.prompt_ids) + len(p.rejected_ids) for p in pairs]),
    }
