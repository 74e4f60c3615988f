"""mindprint_mlx._compat: with the pinned mlx / mlx-lm every reach-in is on and the lean forward and its
prefix cache are what a tiny training step runs; when a private name goes away the public path is taken
and the report says why."""

from __future__ import annotations

import importlib.util
import sys
import tomllib
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from mindprint_interfaces import ConfigError, HFTokenizer
from mindprint_interfaces.data import Message, render_prompt
from mindprint_mlx import MLXBackend, lean_forward, loading
from mindprint_mlx import _compat as mlx_compat
from mindprint_mlx._compat import mlx as mlx_core_compat
from mindprint_mlx._compat import mlx_lm as mlx_lm_compat
from mindprint_mlx.dpo import MLXDPOTrainer
from mindprint_mlx.sft import MLXSFTTrainer

pytestmark = pytest.mark.mlx

ROOT = Path(__file__).resolve().parents[2]
CONFIG = {"learning_rate": 5e-3, "max_steps": 2, "per_device_batch_size": 2, "lora_r": 4, "lora_alpha": 8}


@pytest.fixture(autouse=True)
def clean_record() -> Iterator[None]:
    mlx_lm_compat.forget_declines()
    yield
    mlx_lm_compat.forget_declines()


class StepSpy:
    """Counts the calls of a function, split by whether they ran inside a trainer's micro-step."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, trainer_class: type) -> None:
        self.in_step = False
        self.calls: dict[str, list[bool]] = {}
        self.monkeypatch = monkeypatch
        original = trainer_class._micro_step  # type: ignore[attr-defined]

        def micro_step(trainer: Any, *args: Any, **kwargs: Any) -> Any:
            self.in_step = True
            try:
                return original(trainer, *args, **kwargs)
            finally:
                self.in_step = False

        monkeypatch.setattr(trainer_class, "_micro_step", micro_step)

    def watch(self, owner: Any, name: str) -> None:
        original = getattr(owner, name)
        seen = self.calls.setdefault(name, [])

        def spy(*args: Any, **kwargs: Any) -> Any:
            seen.append(self.in_step)
            return original(*args, **kwargs)

        self.monkeypatch.setattr(owner, name, spy)

    def during_steps(self, name: str) -> int:
        return sum(self.calls.get(name, []))

    def outside_steps(self, name: str) -> int:
        return len(self.calls.get(name, [])) - self.during_steps(name)


def test_installed_mlx_and_mlx_lm_are_the_tested_ones() -> None:
    for tested in mlx_compat.TESTED:
        assert tested.problem() is None, tested.problem()


def test_the_pins_are_the_tested_ranges() -> None:
    project = tomllib.loads((ROOT / "packages/mindprint-mlx/pyproject.toml").read_text(encoding="utf-8"))
    deps = [dep.split(";")[0].strip() for dep in project["project"]["dependencies"]]
    for tested in mlx_compat.TESTED:
        pins = [d for d in deps if d.split(">")[0].split("[")[0].strip() == tested.distribution]
        assert pins, f"{tested.distribution} is not pinned in packages/mindprint-mlx/pyproject.toml"
        for pin in pins:
            assert pin.endswith(tested.specifier), (
                f"pyproject.toml pins {pin!r} but _compat is verified on {tested.specifier}: move both together, "
                "after re-verifying the _compat module")


def test_every_reach_in_is_on() -> None:
    paths = mlx_compat.fast_paths()
    assert {p.name for p in paths} == {mlx_lm_compat.MODEL_LOOKUP, mlx_lm_compat.HF_TOKENIZER, mlx_core_compat.LAUNCHER}
    assert all(p.available for p in paths), [p.describe() for p in paths if not p.available]


def test_sft_step_runs_the_lean_forward(backend: MLXBackend, load_tiny: Callable[[], Any],
                                        sft_records: list[dict[str, Any]], tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    spy = StepSpy(monkeypatch, MLXSFTTrainer)
    spy.watch(lean_forward, "batch_ce")
    trainer = backend.create_sft_trainer(load_tiny(), {**CONFIG, "output_dir": str(tmp_path)})
    assert trainer.lean_forward is True
    result = trainer.train(sft_records)
    assert result.success, result.error_message
    assert spy.during_steps("batch_ce") == CONFIG["max_steps"], spy.calls
    assert all(p.available for p in mlx_compat.fast_paths())


def test_dpo_step_runs_the_lean_forward_with_the_prefix_cache(backend: MLXBackend, load_tiny: Callable[[], Any],
                                                             preference_records: list[dict[str, Any]],
                                                             tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spy = StepSpy(monkeypatch, MLXDPOTrainer)
    spy.watch(lean_forward, "batch_logps")
    spy.watch(lean_forward.PrefixCache, "fork")
    trainer = backend.create_dpo_trainer(load_tiny(), {**CONFIG, "output_dir": str(tmp_path)})
    assert trainer.lean_forward is True
    result = trainer.train(preference_records)
    assert result.success, result.error_message
    assert spy.during_steps("batch_logps") == CONFIG["max_steps"], spy.calls
    assert spy.outside_steps("batch_logps") >= 1  # the reference log-probs, before the first step
    # every pair of a step forks its prompt cache (per layer) for chosen and rejected
    assert spy.during_steps("fork") >= CONFIG["max_steps"] * CONFIG["per_device_batch_size"], spy.calls
    assert all(p.available for p in mlx_compat.fast_paths())


def test_model_lookup_without_get_classes(tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mlx_lm.utils

    config = loading.read_hf_config(tiny_model_dir)
    expected = mlx_lm_compat.model_args_class(config)
    monkeypatch.delattr(mlx_lm.utils, mlx_lm_compat.GET_CLASSES)
    assert mlx_lm_compat.model_args_class(config) is expected
    loading.check_supported(config, loading.translate_config(config))  # still accepts the tiny Llama
    with pytest.raises(ConfigError, match="attn_logit_softcapping"):  # and still refuses what llama would drop
        loading.check_supported({**config, "attn_logit_softcapping": 30.0}, {})
    with pytest.raises(ValueError, match="not supported"):
        mlx_lm_compat.model_args_class({**config, "model_type": "no_such_model"})
    off = {p.name: p.reason for p in mlx_compat.fast_paths() if not p.available}
    assert list(off) == [mlx_lm_compat.MODEL_LOOKUP] and mlx_lm_compat.GET_CLASSES in off[mlx_lm_compat.MODEL_LOOKUP]


class FutureWrapper:
    """A TokenizerWrapper that keeps its tokenizer under another name and forwards attribute access to it."""

    def __init__(self, tokenizer: Any) -> None:
        self._hf = tokenizer

    def __getattr__(self, name: str) -> Any:
        return getattr(self._hf, name)


def test_tokenizer_without_the_wrapped_attribute(tiny: Any) -> None:
    inner = mlx_lm_compat.hf_tokenizer(tiny.tokenizer_wrapper)
    assert inner is tiny.tokenizer.hf and inner is not tiny.tokenizer_wrapper
    future = FutureWrapper(inner)
    assert mlx_lm_compat.hf_tokenizer(future) is future  # no recursion through __getattr__
    direct, forwarded = tiny.tokenizer, HFTokenizer(future)
    messages = [Message(role="user", content="What is 3 plus 3?")]
    assert render_prompt(forwarded, messages) == render_prompt(direct, messages)
    assert forwarded.encode("The answer is 6.") == direct.encode("The answer is 6.")
    off = {p.name: p.reason for p in mlx_compat.fast_paths() if not p.available}
    assert list(off) == [mlx_lm_compat.HF_TOKENIZER] and "FutureWrapper" in off[mlx_lm_compat.HF_TOKENIZER]


def test_launcher_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = Path(sys.executable).parent / mlx_core_compat.LAUNCH_SCRIPT
    if script.exists():
        assert mlx_core_compat.launch_prefix() == [str(script)]
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))  # an interpreter without the script beside it
    assert mlx_core_compat.launch_prefix() == [str(tmp_path / "python"), "-m", mlx_core_compat.LAUNCH_MODULE]
    monkeypatch.setattr(metadata, "entry_points", lambda **kwargs: [])
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == mlx_core_compat.LAUNCH_MODULE else real_find_spec(name, *a))
    assert mlx_core_compat.launch_prefix() is None
    (off,) = [p for p in mlx_compat.fast_paths() if not p.available]
    assert off.name == mlx_core_compat.LAUNCHER and mlx_core_compat.LAUNCH_MODULE in off.reason
