"""``--seed N`` reaches the backend and every training section (and nothing when it is not given)."""

from __future__ import annotations

import pytest

from mindprint_trainer.args_config import SEEDED_SECTIONS, config_from_args
from mindprint_trainer.cli import build_parser


@pytest.mark.parametrize("command", ["sft", "dpo", "train", "orpo", "cpo", "kto"])
def test_seed_sets_the_backend_and_every_training_section(command: str) -> None:
    cfg = config_from_args(build_parser().parse_args([command, "--seed", "7"]))
    assert cfg.backend.seed == 7
    assert {name: getattr(cfg, name).seed for name in SEEDED_SECTIONS} == dict.fromkeys(SEEDED_SECTIONS, 7)


def test_without_seed_the_config_decides() -> None:
    cfg = config_from_args(build_parser().parse_args(["sft", "--set", "sft.seed=3"]))
    assert cfg.sft.seed == 3 and cfg.dpo.seed == 42 and cfg.backend.seed == 42
