"""The family matrix: every family of ``mindprint_interfaces.architectures`` on both backends, fp32, tiny models.

Per family (a 2-layer random model written by transformers' ``save_pretrained``, ``tools/tiny_model.py``):
the distinctive feature moves the log-probs; next-token log-probs at every position agree within 1e-4;
greedy generations are identical; the step-0 SFT loss is equal; the DPO step-0 loss is ln 2 with a fresh
adapter; an adapter (``all-linear``, fused modules included) trained on either backend gives the same
log-probs on the other; the MLX lean-forward probe agrees with the table's fast paths.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from mindprint_interfaces import (
    AdapterConfig,
    AdapterFormatError,
    Backend,
    GenerationConfig,
    Model,
    create_backend,
)
from mindprint_interfaces.architectures import (
    COMPACT_HEAD,
    FAMILIES,
    LEAN_FORWARD,
    PRESETS,
    SHARED_PROMPT,
    family,
)
from mindprint_interfaces.errors import MindprintError

pytestmark = [pytest.mark.torch, pytest.mark.mlx]

TOL = 1e-4
SFT = [{"instruction": "What is two plus two?", "output": "Two plus two is four."},
       {"instruction": "The capital of France?", "output": "Paris. The capital of Italy is Rome."}]
PREFS = [{"prompt": "What is the answer?", "chosen": "The answer is yes.", "rejected": "bad polite"},
         {"prompt": "Answer briefly.", "chosen": "Two plus two is four.", "rejected": "question chosen"}]
TEXT = "The capital of France is Paris. Photosynthesis turns light into sugar."  # > the windows of the tiny models


def _backend(name: str) -> Backend:
    try:
        return create_backend(name, device="cpu", dtype="float32", seed=0)
    except MindprintError as exc:
        pytest.skip(f"{name} backend unavailable: {exc}")


@pytest.fixture(scope="module")
def backends() -> tuple[Backend, Backend]:
    return _backend("pytorch"), _backend("mlx")


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tiny_model import build_tiny_family

    return build_tiny_family(request.param, tmp_path_factory.mktemp(f"tiny-{request.param}"))


@pytest.fixture(scope="module")
def pair(backends: tuple[Backend, Backend], family_dir: Path) -> tuple[Model, Model]:
    t, m = backends
    return t.load_model(family_dir), m.load_model(family_dir)


def _model_type(path: Path) -> str:
    import json

    return str(json.loads((path / "config.json").read_text())["model_type"])


def _logprobs(model: Model, ids: list[int]) -> np.ndarray:
    logits = model.forward([ids]).logits[0]
    if hasattr(logits, "detach"):
        arr = logits.detach().float().numpy()
    else:
        import mlx.core as mx

        arr = np.array(logits.astype(mx.float32))
    arr = arr.astype(np.float64)
    return arr - np.log(np.exp(arr - arr.max(-1, keepdims=True)).sum(-1, keepdims=True)) - arr.max(-1, keepdims=True)


def _ids(model: Model) -> list[int]:
    return model.tokenizer.encode(TEXT)


def test_feature_moves_logprobs(backends: tuple[Backend, Backend], family_dir: Path, pair: tuple[Model, Model],
                                tmp_path: Path) -> None:
    """The tiny model makes its family's feature matter: switched off, the log-probs move."""
    from tiny_model import build_tiny_family

    off = backends[0].load_model(build_tiny_family(_model_type(family_dir), tmp_path / "off", feature=False))
    ids = _ids(pair[0])
    moved = np.abs(_logprobs(off, ids) - _logprobs(pair[0], ids)).max()
    assert moved > 0.05, f"{family(_model_type(family_dir))!r}: feature moves log-probs by only {moved:.2e}"


def test_logprobs_agree_at_every_position(pair: tuple[Model, Model]) -> None:
    t, m = pair
    ids = _ids(t)
    assert len(ids) > 8  # longer than the tiny models' sliding windows
    diff = np.abs(_logprobs(t, ids) - _logprobs(m, ids)).max(axis=-1)
    assert diff.max() <= TOL, f"positions {np.nonzero(diff > TOL)[0].tolist()} differ (max {diff.max():.2e})"


def test_greedy_generations_identical(pair: tuple[Model, Model]) -> None:
    t, m = pair
    cfg = GenerationConfig(max_new_tokens=12)
    a, b = t.generate("What is the capital of France?", cfg), m.generate("What is the capital of France?", cfg)
    assert a.token_ids == b.token_ids and len(a.token_ids) > 0


def test_step0_sft_loss_equal_and_dpo_ln2(backends: tuple[Backend, Backend], family_dir: Path, tmp_path: Path) -> None:
    targets = ("all-linear",)
    fam = family(_model_type(family_dir))
    assert fam is not None
    losses = []
    for backend in backends:
        cfg = {"output_dir": str(tmp_path), "target_modules": list(targets), "per_device_batch_size": 2}
        sft = backend.create_trainer("sft", backend.load_model(family_dir), cfg)
        sft_loss, grads = sft.batch_gradients(SFT)
        dpo = backend.create_trainer("dpo", backend.load_model(family_dir), cfg)
        dpo_loss, _ = dpo.batch_gradients(PREFS)
        assert dpo_loss == pytest.approx(math.log(2), abs=1e-5), backend.name
        if backend.name == "pytorch":  # the torch probes ran inside TRL's trainers: they agree with the table
            assert sft.trl_trainer.compact_head == (COMPACT_HEAD in fam.fast_paths)  # type: ignore[attr-defined]
            assert dpo.trl_trainer.shared_prompts == (SHARED_PROMPT in fam.fast_paths)  # type: ignore[attr-defined]
        losses.append((sft_loss, sorted({k.split(".lora_")[0].rsplit(".", 1)[-1] for k in grads})))
    (t_loss, t_modules), (m_loss, m_modules) = losses
    assert t_loss == pytest.approx(m_loss, abs=TOL)
    assert t_modules == m_modules == sorted(fam.preset(targets[0]))


def test_adapters_cross_backends(backends: tuple[Backend, Backend], family_dir: Path, tmp_path: Path) -> None:
    """``all-linear`` (fused modules included) trained on either backend gives the same log-probs on the other."""
    cfg = {"max_steps": 2, "learning_rate": 1e-2, "per_device_batch_size": 2, "target_modules": ["all-linear"],
           "output_dir": str(tmp_path)}
    for trainer_backend, other in (backends, backends[::-1]):
        trainer = trainer_backend.create_trainer("sft", trainer_backend.load_model(family_dir), cfg)
        assert trainer.train(SFT).success
        trained = trainer.get_model()
        ids = _ids(trained)
        expected = _logprobs(trained, ids)
        base = _logprobs(trainer_backend.load_model(family_dir), ids)
        assert np.abs(expected - base).max() > 1e-3, "training should move the log-probs"
        loaded = other.load_model(family_dir, adapter_path=trainer.save_adapter(tmp_path / trainer_backend.name))
        assert np.abs(_logprobs(loaded, ids) - expected).max() <= TOL, f"trained on {trainer_backend.name}"


def test_missing_target_is_an_error_naming_what_the_model_has(backends: tuple[Backend, Backend], family_dir: Path,
                                                              tmp_path: Path) -> None:
    fam = family(_model_type(family_dir))
    assert fam is not None
    missing = "q_proj" if "q_proj" not in fam.attention else "qkv_proj"
    for backend in backends:
        model = backend.load_model(family_dir)
        with pytest.raises(AdapterFormatError, match=rf"'{missing}' not in .*it has: .*{fam.attention[-1]}"):
            backend.adapter_manager.add_adapter(model, AdapterConfig(target_modules=(missing, "o_proj")))
        assert not model.has_adapter()


def test_lean_forward_probe_agrees_with_the_table(pair: tuple[Model, Model], family_dir: Path) -> None:
    from mindprint_mlx.lean_forward import supports_lean_forward

    fam = family(_model_type(family_dir))
    assert fam is not None
    assert supports_lean_forward(pair[1].module) == (LEAN_FORWARD in fam.fast_paths)  # type: ignore[attr-defined]


def test_attention_preset_on_both_backends(pair: tuple[Model, Model], family_dir: Path,
                                           backends: tuple[Backend, Backend]) -> None:
    fam = family(_model_type(family_dir))
    assert fam is not None
    for backend in backends:
        model = backend.load_model(family_dir)
        backend.adapter_manager.add_adapter(model, AdapterConfig(target_modules=("attention",)))
        if backend.name == "mlx":
            adapted = model.adapter_config.target_modules  # type: ignore[attr-defined]
        else:
            adapted = model.hf_model.peft_config["default"].target_modules  # type: ignore[attr-defined]
        assert sorted(adapted) == sorted(fam.attention), backend.name


def test_presets_cover_every_linear(pair: tuple[Model, Model], family_dir: Path) -> None:
    import torch

    fam = family(_model_type(family_dir))
    assert fam is not None and set(PRESETS) == {"attention", "mlp", "all-linear"}
    layer = pair[0].base_model.model.layers[0]  # type: ignore[attr-defined]
    linears = {n: m for n, m in layer.named_modules() if isinstance(m, torch.nn.Linear)}
    assert {n.rsplit(".", 1)[-1]: n for n in linears} == fam.module_paths



@pytest.fixture(scope="module")
def bf16_backends() -> tuple[Backend, Backend]:
    try:
        return tuple(create_backend(n, device="cpu", dtype="bfloat16", seed=0)  # type: ignore[return-value]
                     for n in ("pytorch", "mlx"))
    except MindprintError as exc:
        pytest.skip(f"backend unavailable: {exc}")


def test_bf16_backends_differ_no_more_than_bf16_itself(pair: tuple[Model, Model], family_dir: Path,
                                                       bf16_backends: tuple[Backend, Backend]) -> None:
    """bf16 on both backends: torch-vs-MLX in bf16 is of the size of bf16's own error against fp32
    (measured on the tiny models: bf16-vs-fp32 0.006-0.071, torch-vs-MLX bf16 0.008-0.082 nats, max over positions)."""
    t16, m16 = (b.load_model(family_dir) for b in bf16_backends)
    assert t16.dtype == m16.dtype == "bfloat16"
    ids = _ids(pair[0])
    t32, m32 = _logprobs(pair[0], ids), _logprobs(pair[1], ids)
    lt, lm = _logprobs(t16, ids), _logprobs(m16, ids)
    own = max(np.abs(lt - t32).max(), np.abs(lm - m32).max())
    across = np.abs(lt - lm).max()
    assert own > 1e-3, "bf16 should differ from fp32"
    assert across <= 2.0 * own, f"torch-vs-MLX bf16 {across:.3f} vs bf16-vs-fp32 {own:.3f}"


def test_every_family_has_a_tiny_builder() -> None:
    from tiny_model import FAMILY_BUILDS

    assert set(FAMILY_BUILDS) == set(FAMILIES)
    for fam in FAMILIES.values():
        assert fam.feature and set(fam.all_linear) == set(fam.module_paths)
