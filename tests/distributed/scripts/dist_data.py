"""Shared by the distributed worker scripts and tests: one global batch with very different lengths per example.

The lengths differ a lot so that the two ranks of a 2-process run hold different numbers of loss tokens:
a loss averaged per rank and then across ranks (instead of summed and divided by the global token count)
gives a different gradient, and the tests see it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SFT_RECORDS: list[dict[str, Any]] = [
    {"instruction": "What is two plus two?", "output": "Four."},
    {"instruction": "Name the capital of France.",
     "output": "The capital of France is Paris. The capital of Italy is Rome. Answer briefly and kindly, always."},
    {"instruction": "Say yes.", "output": "yes"},
    {"instruction": "What does photosynthesis do?",
     "output": "Photosynthesis turns light, water and carbon dioxide into sugar and oxygen for the plant."},
]

PREFERENCE_RECORDS: list[dict[str, Any]] = [
    {"prompt": "What is two plus two?", "chosen": "Four.", "rejected": "bad bad no yes, the answer is five"},
    {"prompt": "Name the capital of France.", "chosen": "The capital of France is Paris, kindly.",
     "rejected": "Rome."},
    {"prompt": "Say yes.", "chosen": "yes", "rejected": "no"},
    {"prompt": "What does photosynthesis do?",
     "chosen": "It turns light, water and carbon dioxide into sugar and oxygen.", "rejected": "nothing at all, bad"},
]


def write_result(path: str | Path, payload: dict[str, Any]) -> None:
    Path(path).write_text(json.dumps(payload, indent=2, sort_keys=True))
