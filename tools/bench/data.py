"""Fixed synthetic SFT and preference sets for the benchmark (deterministic, seeded, no downloads).

Text is built from a small fixed vocabulary with ``random.Random(seed)``, so every run, every
machine and every side of a comparison sees exactly the same records. Lengths are chosen so a
sequence is roughly 100-250 tokens with the SmolLM2 chat template (its default system prompt
adds ~20 tokens); :func:`token_stats` reports the real numbers, which go into the results JSON.

:func:`sft_mix_records` is the realistic length mix (issue #19): completion lengths drawn from a log-normal
(median ~120 SmolLM2 tokens, clipped to 16-1000), the long tail that makes padding expensive and packing pay.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from typing import Any

SEED = 1234
NUM_SFT = 96
NUM_PAIRS = 48
NUM_SFT_MIX = 192
MIX_MEDIAN_TOKENS = 120  # completion tokens (SmolLM2 tokenizer), median of the log-normal
MIX_SIGMA = 0.85  # log-space spread: ~1 % of the draws at each clip
MIX_MIN_TOKENS, MIX_MAX_TOKENS = 16, 940  # 940 + prompt + template stays within max_length 1024
TOKENS_PER_WORD = 1.1  # SmolLM2's BPE on this vocabulary (words + punctuation), measured: 1.10

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


def _words(rng: random.Random) -> Iterator[str]:
    while True:
        yield from _sentence(rng).split()


def sft_mix_records(n: int = NUM_SFT_MIX, seed: int = SEED + 2) -> list[dict[str, Any]]:
    """``{"instruction", "output"}`` records with long-tailed completion lengths: a log-normal draw (median
    :data:`MIX_MEDIAN_TOKENS`, sigma :data:`MIX_SIGMA`) clipped to 16-940 tokens, turned into a word budget
    (:data:`TOKENS_PER_WORD`); the answer is the sentence stream cut at that many words. Prompts as in
    :func:`sft_records`. The real token counts are in the results' ``token_stats`` (``sftmix_*``)."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    for _ in range(n):
        prompt = _prompt(rng)
        tokens = min(MIX_MAX_TOKENS, max(MIX_MIN_TOKENS, round(rng.lognormvariate(math.log(MIX_MEDIAN_TOKENS),
                                                                                  MIX_SIGMA))))
        opener = rng.choice(_POLITE)
        budget = max(1, round(tokens / TOKENS_PER_WORD) - len(opener.split()))
        stream = _words(rng)
        text = " ".join(next(stream) for _ in range(budget)).rstrip(".")
        out.append({"instruction": prompt, "output": f"{opener} {text}."})
    return out


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


def token_stats(sft: Sequence[Any], pairs: Sequence[Any], mix: Sequence[Any] = (),
                mix_max_length: int = 1024) -> dict[str, Any]:
    """Length statistics of tokenized data (``TokenizedExample`` / ``TokenizedPair`` lists); ``mix``: the length
    mix's examples, with the packed rows they make at ``mix_max_length`` (rows, tokens per row, fill)."""
    stats: dict[str, Any] = {
        "sft_sequence_tokens": _summary([len(e.input_ids) for e in sft]),
        "sft_loss_tokens": _summary([e.num_loss_tokens for e in sft]),
        "dpo_chosen_sequence_tokens": _summary([len(p.prompt_ids) + len(p.chosen_ids) for p in pairs]),
        "dpo_rejected_sequence_tokens": _summary([len(p.prompt_ids) + len(p.rejected_ids) for p in pairs]),
    }
    if mix:
        from mindprint_kit.packing import pack_examples

        rows = pack_examples(mix, mix_max_length)
        stats["sftmix_sequence_tokens"] = _summary([len(e.input_ids) for e in mix])
        stats["sftmix_loss_tokens"] = _summary([e.num_loss_tokens for e in mix])
        stats["sftmix_packed_rows"] = {
            "max_length": mix_max_length, "rows": len(rows), "sequences_per_row": round(len(mix) / len(rows), 2),
            "row_tokens": _summary([len(r.input_ids) for r in rows]),
            "fill": round(sum(len(r.input_ids) for r in rows) / (len(rows) * mix_max_length), 3)}
    return stats
