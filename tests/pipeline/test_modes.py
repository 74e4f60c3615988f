"""Legacy mode (a transformers model passed in), backend selection and bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mindprint_interfaces import (
    Backend,
    BackendNotFoundError,
    ConfigError,
    DataValidationError,
    create_backend,
)
from mindprint_pipeline import DPOPipeline, PipelineConfig

from .conftest import DATA, ScriptedEvaluator, fast_config, make_backend

ROOT = Path(__file__).resolve().parents[2]
CAPITALS = [{"question": "What is the capital of France?", "answer": "Paris.", "topic_id": "geo/eu/capitals"}]


def _any_backend() -> Backend:
    for name in ("mlx", "pytorch"):
        try:
            return create_backend(name, device="cpu")
        except (BackendNotFoundError, ImportError):
            continue
    pytest.skip("no backend installed")


@pytest.mark.torch
def test_legacy_mode_wraps_a_transformers_model(tiny_model_dir: Path, tmp_path: Path) -> None:
    make_backend("pytorch")  # skips when the torch backend is not installed
    from transformers import AutoModelForCausalLM, AutoTokenizer

    hf_model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
    hf_tok = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    cfg = fast_config(tiny_model_dir, tmp_path / "out", model_path=None, backend_type=None)
    pipe = DPOPipeline(model=hf_model, tokenizer=hf_tok, config=cfg, evaluator=ScriptedEvaluator({}))
    assert pipe.backend.name == "pytorch"
    assert pipe.model is not None and pipe.model.backend_name == "pytorch"
    result = pipe.train_curriculum(CAPITALS, [])
    assert result.completed and result.passed_topics == ["geo/eu/capitals"]
    base = cfg.checkpoint_path / "base"
    assert (base / "config.json").is_file()  # the passed-in model, saved once (verified) for reloads/retries
    assert result.final_model_path == str(tmp_path / "out" / "merged" / "geo")


@pytest.mark.torch
def test_legacy_mode_errors(tiny_model_dir: Path) -> None:
    make_backend("pytorch")
    from transformers import AutoModelForCausalLM

    hf_model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
    with pytest.raises(ConfigError, match="needs its tokenizer"):
        DPOPipeline(model=hf_model, config=PipelineConfig())
    with pytest.raises(ConfigError, match="cannot wrap a transformers model"):
        DPOPipeline(model=hf_model, tokenizer=object(), config=PipelineConfig(backend_type="mlx"))


def test_legacy_mode_needs_a_backend_with_wrap() -> None:
    class NoWrap:
        name = "fake"

    with pytest.raises(ConfigError, match="has no wrap"):
        DPOPipeline(model=object(), tokenizer=object(), backend=NoWrap())  # type: ignore[arg-type]


def test_backend_from_config_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    backend = _any_backend()
    monkeypatch.delenv("MINDPRINT_BACKEND", raising=False)
    with pytest.raises(ConfigError, match="no backend chosen"):
        DPOPipeline(config=PipelineConfig(model_path="x"))
    assert DPOPipeline(config=PipelineConfig(backend_type=backend.name, device="cpu")).backend.name == backend.name
    monkeypatch.setenv("MINDPRINT_BACKEND", backend.name)
    assert DPOPipeline(config={"device": "cpu"}).backend.name == backend.name
    with pytest.raises(BackendNotFoundError, match="Unknown backend"):
        DPOPipeline(config=PipelineConfig(backend_type="jax"))


def test_bad_data_fails_before_any_work(tmp_path: Path) -> None:
    backend = _any_backend()
    out = tmp_path / "out"

    def run(data_dir: Path, **kw: object) -> None:
        cfg = PipelineConfig(model_path="/nonexistent", data_dir=str(data_dir), output_dir=str(out))
        DPOPipeline(config=cfg, backend=backend).train_curriculum(**kw)  # type: ignore[arg-type]

    with pytest.raises(DataValidationError, match="SFT data file not found"):
        run(tmp_path)
    (tmp_path / "sft_data.jsonl").write_text(
        json.dumps({"question": "q", "answer": "a"}) + "\n" + "{broken\n"
        + json.dumps({"question": "q", "output": 3, "topic_id": "u/c/t"}) + "\n")
    with pytest.raises(DataValidationError) as info:
        run(tmp_path)
    assert [i.line for i in info.value.issues] == [2, 3]  # JSON and schema errors together
    (tmp_path / "sft_data.jsonl").write_text(json.dumps({"question": "q", "answer": "a"}) + "\n")
    with pytest.raises(DataValidationError, match="preference data file not found"):
        run(tmp_path)
    (tmp_path / "preference_data.jsonl").write_text(json.dumps({"prompt": "q", "chosen": "a", "rejected": "a"}) + "\n")
    with pytest.raises(DataValidationError, match="identical to chosen"):
        run(tmp_path)
    (tmp_path / "preference_data.jsonl").write_text(json.dumps({"prompt": "q", "chosen": "a", "rejected": "b"}) + "\n")
    with pytest.raises(DataValidationError, match="every SFT record must name its topic"):
        run(tmp_path)
    with pytest.raises(ConfigError, match="stop_after_topics"):
        run(tmp_path, stop_after_topics=0)
    assert not out.exists()  # nothing was written: no checkpoint, no result


def test_missing_model_is_a_config_error(tmp_path: Path) -> None:
    cfg = PipelineConfig(data_dir=str(DATA), output_dir=str(tmp_path))
    with pytest.raises(ConfigError, match="no model"):
        DPOPipeline(config=cfg, backend=_any_backend()).train_curriculum()


def test_running_the_pipeline_imports_no_tensor_library_from_its_own_modules(tiny_model_dir: Path,
                                                                             tmp_path: Path) -> None:
    """Run a 1-topic pipeline with a backend passed in; record who imports torch/mlx/transformers/numpy."""
    name = _any_backend().name
    script = f"""
import builtins, sys
FORBIDDEN = ("torch", "mlx", "mlx_lm", "transformers", "numpy")
PIPELINE = {str(ROOT / "packages" / "mindprint-pipeline" / "src")!r}
culprits = []
real_import = builtins.__import__
def spy(name, globals=None, locals=None, fromlist=(), level=0):
    if level == 0 and name.split(".")[0] in FORBIDDEN:
        importer = (globals or {{}}).get("__file__") or ""
        if importer.startswith(PIPELINE):
            culprits.append((name, importer))
    return real_import(name, globals, locals, fromlist, level)
builtins.__import__ = spy
import mindprint_pipeline
assert not [m for m in FORBIDDEN if m in sys.modules], "importing mindprint_pipeline loaded a tensor library"
from mindprint_interfaces import create_backend
from mindprint_pipeline import DPOPipeline, PipelineConfig
backend = create_backend({name!r}, device="cpu")
cfg = PipelineConfig(model_path={str(tiny_model_dir)!r}, output_dir={str(tmp_path / "out")!r}, sft_epochs_per_topic=1,
                     eval_max_new_tokens=2, max_retries_per_topic=0, merge_after_unit=True)
result = DPOPipeline(config=cfg, backend=backend).train_curriculum(
    [{{"question": "q?", "answer": "a.", "topic_id": "u/c/t"}}], [])
assert result.completed, result
assert any(m in sys.modules for m in FORBIDDEN)  # the backend did load its library ...
assert not culprits, culprits  # ... but never from the pipeline's own modules
print("ok")
"""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tools"), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=600,
                         check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith("ok")


def test_legacy_mode_picks_the_backend_that_wraps_the_models_library() -> None:
    """No backend name in the pipeline: the registry's ``BackendSpec.wraps`` decides who wraps a foreign model."""
    from mindprint_interfaces import BackendRegistry, BackendSpec

    class Chosen(Exception):
        pass

    class ForeignModel:  # its module's top-level package is "tests"
        pass

    def factory(config: object) -> object:
        raise Chosen(config)

    BackendRegistry.register("wrapper-of-tests", BackendSpec(name="wrapper-of-tests", factory=factory,
                                                             wraps=("tests",)))
    try:
        with pytest.raises(Chosen):
            DPOPipeline(model=ForeignModel(), tokenizer=object(), config=PipelineConfig())
        with pytest.raises(ConfigError, match="cannot wrap a tests model"):
            DPOPipeline(model=ForeignModel(), tokenizer=object(), config=PipelineConfig(backend_type="pytorch"))
    finally:
        BackendRegistry.unregister("wrapper-of-tests")
