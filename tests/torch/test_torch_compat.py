"""mindprint_torch._compat: with the pinned TRL every reach-in is on and every fast path is what a tiny
training step actually runs; when a private name goes away the accessor says so and TRL's path runs."""

from __future__ import annotations

import tomllib
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mindprint_interfaces import MindprintError
from mindprint_torch import PyTorchModel, TorchBackend, compact_head, shared_prefix
from mindprint_torch import _compat as torch_compat
from mindprint_torch._compat import transformers as transformers_compat
from mindprint_torch._compat import trl as trl_compat
from mindprint_torch.callbacks import FiniteLossMixin
from mindprint_torch.dpo import _DPOTrainer

pytestmark = pytest.mark.torch

ROOT = Path(__file__).resolve().parents[2]
CONFIG = {"learning_rate": 5e-3, "max_steps": 2, "per_device_batch_size": 4, "seed": 0}


@pytest.fixture(autouse=True)
def clean_record() -> Iterator[None]:
    trl_compat.forget_declines()
    yield
    trl_compat.forget_declines()


class StepSpy:
    """Counts the calls of a function, split by whether they ran inside a trainer's ``training_step``."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.in_step = False
        self.calls: dict[str, list[bool]] = {}
        original = FiniteLossMixin.training_step

        def training_step(trainer: Any, *args: Any, **kwargs: Any) -> Any:
            self.in_step = True
            try:
                return original(trainer, *args, **kwargs)
            finally:
                self.in_step = False

        monkeypatch.setattr(FiniteLossMixin, "training_step", training_step)
        self.monkeypatch = monkeypatch

    def watch(self, owner: Any, name: str, *, counts: Callable[[Any], bool] = lambda result: True) -> None:
        """Record each call of ``owner.name`` whose result ``counts`` (e.g. not a decline)."""
        original = getattr(owner, name)
        seen = self.calls.setdefault(name, [])

        def spy(*args: Any, **kwargs: Any) -> Any:
            result = original(*args, **kwargs)
            if counts(result):
                seen.append(self.in_step)
            return result

        self.monkeypatch.setattr(owner, name, spy)

    def during_steps(self, name: str) -> int:
        return sum(self.calls.get(name, []))

    def outside_steps(self, name: str) -> int:
        return len(self.calls.get(name, [])) - self.during_steps(name)


def _compact_calls(spy: StepSpy, monkeypatch: pytest.MonkeyPatch) -> None:
    """Count the calls that go through the compact head's kernel (TRL's own forward calls TRL's, not this one)."""
    real = trl_compat.fused_head

    def fused_head() -> Any:
        head = real()
        if head is None:
            return None
        kernel = types.SimpleNamespace(apply=head.function.apply)
        spy.watch(kernel, "apply")
        return trl_compat.FusedHead(function=kernel, output=head.output, gather_context=head.gather_context,
                                    chunk_size=head.chunk_size)

    monkeypatch.setattr(trl_compat, "fused_head", fused_head)


def test_installed_trl_is_the_tested_one() -> None:
    for tested in torch_compat.TESTED:
        assert tested.problem() is None, tested.problem()


def test_the_pin_is_the_tested_range() -> None:
    project = tomllib.loads((ROOT / "packages/mindprint-torch/pyproject.toml").read_text(encoding="utf-8"))
    pins = {dep.split(">")[0].split("<")[0].strip(): dep for dep in project["project"]["dependencies"]}
    for tested in torch_compat.TESTED:
        assert pins[tested.distribution] == f"{tested.distribution}{tested.specifier}", (
            f"pyproject.toml pins {pins[tested.distribution]!r} but _compat is verified on {tested.specifier}: "
            "move both together, after re-verifying the _compat module")


def test_every_reach_in_is_on() -> None:
    paths = torch_compat.fast_paths()
    assert {p.name for p in paths} == {trl_compat.COMPACT_HEAD, trl_compat.DPO_DATASET, trl_compat.DPO_PRECOMPUTE,
                                       trl_compat.ORPO_TRAINER, trl_compat.CPO_TRAINER, trl_compat.KTO_DATASET,
                                       transformers_compat.TRAIN_SAMPLER}
    assert all(p.available for p in paths), [p.describe() for p in paths if not p.available]
    assert any("trl 1.16" in line for line in torch_compat.compat_report())


def test_sft_step_runs_the_compact_head(backend: TorchBackend, load_tiny: Callable[[], PyTorchModel],
                                        sft_records: list[dict[str, Any]], tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    spy = StepSpy(monkeypatch)
    _compact_calls(spy, monkeypatch)
    trainer = backend.create_sft_trainer(load_tiny(), {**CONFIG, "output_dir": str(tmp_path)})
    result = trainer.train(sft_records)
    assert result.success, result.error_message
    assert trainer.trl_trainer.compact_head is True
    assert spy.during_steps("apply") == CONFIG["max_steps"], spy.calls  # one micro-batch per step
    assert all(p.available for p in torch_compat.fast_paths())


def test_dpo_step_runs_the_compact_head_on_shared_prompts(backend: TorchBackend,
                                                         load_tiny: Callable[[], PyTorchModel],
                                                         easy_pairs: list[dict[str, Any]], tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    spy = StepSpy(monkeypatch)
    _compact_calls(spy, monkeypatch)
    spy.watch(shared_prefix, "hidden_states", counts=lambda hidden: hidden is not None)
    spy.watch(_DPOTrainer, "pretokenized_dataset")
    spy.watch(_DPOTrainer, "reference_logps_dataset")
    trainer = backend.create_dpo_trainer(load_tiny(), {**CONFIG, "output_dir": str(tmp_path)})
    result = trainer.train(easy_pairs)
    assert result.success, result.error_message
    assert trainer.trl_trainer.compact_head is True and trainer.trl_trainer.shared_prompts is True
    steps = CONFIG["max_steps"]
    assert spy.during_steps("apply") == steps, spy.calls
    assert spy.during_steps("hidden_states") == steps, spy.calls
    # the TRL hooks: our tokens passed through, the reference log-probs computed in memory, through the shared path
    assert spy.outside_steps("pretokenized_dataset") == 1 and spy.outside_steps("reference_logps_dataset") == 1
    assert spy.outside_steps("hidden_states") >= 2  # the probe, then the reference precompute
    assert all(p.available for p in torch_compat.fast_paths())


def test_a_renamed_trl_forward_turns_the_compact_head_off_visibly(backend: TorchBackend,
                                                                  load_tiny: Callable[[], PyTorchModel],
                                                                  sft_records: list[dict[str, Any]], tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """TRL's main branch renamed the patched forward: training goes on with TRL's head, and the report says so."""
    import trl.trainer.sft_trainer as sft_module

    real = getattr(sft_module, "add_fused_lm_head")  # noqa: B009  # re-exported by TRL, untyped for mypy

    def renamed_patch(model: Any, *args: Any, **kwargs: Any) -> None:
        real(model, *args, **kwargs)
        trl_forward = model.forward

        def _fused_lm_head_forward(self: Any, *a: Any, **k: Any) -> Any:
            return trl_forward(*a, **k)

        model.forward = types.MethodType(_fused_lm_head_forward, model)

    monkeypatch.setattr(sft_module, "add_fused_lm_head", renamed_patch)
    trainer = backend.create_sft_trainer(load_tiny(), {**CONFIG, "output_dir": str(tmp_path)})
    result = trainer.train(sft_records)
    assert result.success, result.error_message
    assert trainer.trl_trainer.compact_head is False
    off = {p.name: p for p in torch_compat.fast_paths() if not p.available}
    assert list(off) == [trl_compat.COMPACT_HEAD]
    assert "_fused_lm_head_forward" in off[trl_compat.COMPACT_HEAD].reason


def test_a_missing_chunk_size_leaves_trls_forward(tiny: PyTorchModel, monkeypatch: pytest.MonkeyPatch) -> None:
    import trl.trainer.utils as utils

    utils.add_fused_lm_head(tiny.hf_model)
    trl_forward = tiny.hf_model.__dict__["forward"]
    monkeypatch.delattr(utils, trl_compat.CHUNK_SIZE)
    assert trl_compat.fused_head() is None
    assert compact_head.install(tiny.hf_model) is False
    assert tiny.hf_model.__dict__["forward"] is trl_forward
    (off,) = [p for p in torch_compat.fast_paths() if not p.available]
    assert off.name == trl_compat.COMPACT_HEAD and trl_compat.CHUNK_SIZE in off.reason


def test_precompute_hook_of_another_shape_runs_trls_own() -> None:
    class FutureTRL:
        def _precompute_ref_logps(self, dataset: Any, name: str, batch_size: int, engine: Any) -> Any:
            return ("trl", dataset)

    class Trainer(trl_compat.DPOTrainerHooks, FutureTRL):
        def reference_logps_dataset(self, dataset: Any, batch_size: int) -> Any:
            return ("ours", dataset, batch_size)

    assert Trainer()._precompute_ref_logps("data", "train", 4) == ("ours", "data", 4)
    assert Trainer()._precompute_ref_logps("data", "train", 4, None) == ("trl", "data")
    (off,) = [p for p in torch_compat.fast_paths() if not p.available]
    assert off.name == trl_compat.DPO_PRECOMPUTE


def test_missing_trl_hooks_are_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    from trl.trainer.dpo_trainer import DPOTrainer

    monkeypatch.delattr(DPOTrainer, trl_compat.PRECOMPUTE_HOOK)
    monkeypatch.delattr(DPOTrainer, trl_compat.DATASET_HOOK)
    off = {p.name: p.reason for p in torch_compat.fast_paths() if not p.available}
    assert set(off) == {trl_compat.DPO_DATASET, trl_compat.DPO_PRECOMPUTE}
    assert trl_compat.DATASET_HOOK in off[trl_compat.DPO_DATASET]
    with pytest.raises(MindprintError, match="needs TRL >=1.16,<1.17"):
        trl_compat.require_dpo_dataset_hook()


def test_dpo_without_the_dataset_hook_fails_clearly(backend: TorchBackend, tiny: PyTorchModel,
                                                    easy_pairs: list[dict[str, Any]], tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from trl.trainer.dpo_trainer import DPOTrainer

    monkeypatch.delattr(DPOTrainer, trl_compat.DATASET_HOOK)
    result = backend.create_dpo_trainer(tiny, {**CONFIG, "output_dir": str(tmp_path)}).train(easy_pairs)
    assert not result.success
    assert "needs TRL >=1.16,<1.17" in (result.error_message or "")
