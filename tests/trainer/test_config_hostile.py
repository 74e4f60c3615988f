"""Hostile and odd config files: one short error each, fast and small (#20)."""

from __future__ import annotations

import resource
import time
from pathlib import Path

import pytest

from mindprint_interfaces import ConfigError
from mindprint_interfaces.validation import short
from mindprint_trainer.config import load_config, parse_set


def _bomb(levels: int = 9, width: int = 9) -> str:
    lines = ["a0: &a0 [" + ", ".join(["x"] * width) + "]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    lines.append(f"sft:\n  learning_rate: *a{levels - 1}")
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_fails_fast_with_small_memory(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(_bomb())
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    with pytest.raises(ConfigError, match="aliases expand to more than") as info:
        load_config(path, env={})
    assert time.perf_counter() - started < 5  # seconds, not minutes (loose: a limit, not a benchmark)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KiB: not gigabytes
    assert len(str(info.value)) < 300 and str(path) in str(info.value)


def test_a_big_wrong_value_is_shown_short_with_its_key_path(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text("sft:\n  learning_rate: [" + ", ".join(str(i) for i in range(20000)) + "]\n"
                    "dpo:\n  beta: '" + "b" * 100_000 + "'\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    message = str(info.value)
    assert "learning_rate" in message or "beta" in message
    assert len(message) < 400


def test_short_is_bounded_for_shared_structures() -> None:
    value: object = ["x"] * 9
    for _ in range(8):
        value = [value] * 9  # 387 million leaves, a few hundred objects
    assert len(short(value)) <= 80
    assert short("abc") == "'abc'"


def test_duplicate_keys_are_an_error_naming_both_lines(tmp_path: Path) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text("sft:\n  learning_rate: 1e-4\n  learning_rate: 1e-2\n")
    with pytest.raises(ConfigError, match=r"appears twice in one mapping \(lines 2 and 3\)") as info:
        load_config(path, env={})
    assert f"{path}:3" in str(info.value)


def test_a_bom_is_accepted_and_bad_bytes_name_their_line(tmp_path: Path) -> None:
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbfsft:\n  learning_rate: 0.001\n")
    assert load_config(path, env={}).sft_config().learning_rate == 0.001
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes(b"sft:\n  learning_rate: 0.001\n# caf\xe9\n")
    with pytest.raises(ConfigError, match="not UTF-8") as info:
        load_config(bad, env={})
    assert f"{bad}:3" in str(info.value)


def test_set_values_are_bounded_too() -> None:
    with pytest.raises(ConfigError, match="aliases expand"):
        parse_set(["sft.learning_rate=" + _bomb().replace("\n", "\n")])
