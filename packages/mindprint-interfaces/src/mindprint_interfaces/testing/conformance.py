"""The backend-agnostic conformance suite (langchain standard-tests style).

``BackendConformance`` is written once against the mindprint_interfaces protocols; a backend
package subclasses it in a test module, names its backend and model classes, and provides a tiny
model directory through the ``model_dir`` fixture (an HF-layout causal LM with a chat template, a
few layers, random weights: the tests train it for a few steps on CPU). A backend whose package or
libraries are not installed is skipped with the reason; a capability the backend does not have is
switched off with its ``supports_*`` flag (or ``adapter_formats``) and its tests are skipped.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from mindprint_interfaces import (
    Backend,
    BackendMismatchError,
    BackendRegistry,
    BaseCallback,
    ConfigError,
    DataValidationError,
    Generation,
    GenerationConfig,
    Model,
    TrainingResult,
    create_backend,
)
from mindprint_interfaces.adapter_format import PEFT_CONFIG, PEFT_WEIGHTS
from mindprint_interfaces.errors import MindprintError
from mindprint_interfaces.methods import method_names

SFT_RECORDS: list[dict[str, Any]] = [
    {"question": "What is the capital of France?", "answer": "Paris is the capital of France.", "topic_id": "u1/c1/t1"},
    {"question": "What is the capital of Italy?", "answer": "Rome is the capital of Italy.", "topic_id": "u1/c1/t1"},
    {"instruction": "What is two plus two?", "output": "Two plus two is four.", "topic_id": "u1/c1/t1"},
    {"messages": [{"role": "user", "content": "Say hello"}, {"role": "assistant", "content": "Hello, kindly."}]},
]
PREFERENCES: list[dict[str, Any]] = [
    {"prompt": "What is the capital of France?", "chosen": "Paris.", "rejected": "Rome."},
    {"prompt": "What is two plus two?", "chosen": "Four.", "rejected": "Five."},
    {"prompt": "Answer kindly: what is photosynthesis?", "chosen": "Light turns water and carbon dioxide into sugar.",
     "rejected": "No."},
    {"prompt": "What is the capital of Italy?", "chosen": "Rome.", "rejected": "Paris."},
]
PROBE = "What is the capital of France?"


class StepRecorder(BaseCallback):
    def __init__(self) -> None:
        self.steps: list[tuple[int, dict[str, float]]] = []
        self.saves: list[Path] = []

    def on_step(self, step: int, metrics: Mapping[str, float]) -> None:
        self.steps.append((step, dict(metrics)))

    def on_save(self, path: Path) -> None:
        self.saves.append(path)


class ForeignModel:
    """A model object from some other backend; only its class name matters to the check."""


def _prompt_ids(model: Model, text: str = PROBE) -> list[int]:
    tok = model.tokenizer
    return tok.encode(tok.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True))


class BackendConformance:
    """Subclass, set the names below and override ``model_dir``; every backend passes the same tests.

    The ``supports_*`` flags and ``adapter_formats`` declare what the backend can do; a test of a
    capability the backend switched off is skipped with the reason.
    """

    backend_name: str = ""
    """The name the backend is registered under (``create_backend(backend_name)``)."""
    model_class_name: str = ""
    """The class name of the backend's models (the mismatch error names it)."""
    other_model_class_name: str = ""
    """A model class name of another backend, which the backend's trainers must reject."""

    supports_dpo: bool = True
    """``create_dpo_trainer`` trains (step 0 loss ln 2, TRL's metric names)."""
    methods: tuple[str, ...] = ("sft", "dpo", "orpo", "cpo", "kto")
    """Training methods ``create_trainer(method, ...)`` implements (of :func:`mindprint_interfaces.methods.method_names`)."""
    supports_merge: bool = True
    """``Model.save_pretrained`` writes merged weights that reload identically."""
    supports_distributed: bool = True
    """The registry spec has a data-parallel launcher and the variables that mark a launched rank."""
    supports_generation_seed: bool = True
    """Sampling with ``GenerationConfig(seed=...)`` is reproducible."""
    adapter_formats: tuple[str, ...] = ("peft", "mlx")
    """Adapter layouts ``save_adapter(format=...)`` writes and ``load_adapter`` reads (``"peft"`` is required)."""

    def require(self, supported: bool, capability: str) -> None:
        """Skip the running test when the backend switched ``capability`` off."""
        if not supported:
            pytest.skip(f"{self.backend_name} backend does not support {capability}")

    # -- fixtures -----------------------------------------------------------------------------------
    @pytest.fixture(scope="class")
    def model_dir(self) -> Path:
        """Override: the tiny model directory the tests load (see the module docstring)."""
        raise NotImplementedError(f"{type(self).__name__} must override the model_dir fixture")

    @pytest.fixture(scope="class")
    def backend(self) -> Backend:
        try:
            return create_backend(self.backend_name, device="cpu", dtype="float32", seed=0)
        except MindprintError as exc:  # package or library missing on this host
            pytest.skip(f"{self.backend_name} backend unavailable: {exc}")

    @pytest.fixture(scope="class")
    def model(self, backend: Backend, model_dir: Path) -> Model:
        return backend.load_model(model_dir)

    @pytest.fixture
    def fresh_model(self, backend: Backend, model_dir: Path) -> Model:
        return backend.load_model(model_dir)

    @pytest.fixture
    def workdir(self, tmp_path: Path) -> Iterator[Path]:
        yield tmp_path

    # -- loading and inference ----------------------------------------------------------------------
    def test_load(self, model: Model, model_dir: Path) -> None:
        assert model.backend_name == self.backend_name
        assert type(model).__name__ == self.model_class_name
        assert model.num_layers == json.loads((model_dir / "config.json").read_text())["num_hidden_layers"]
        assert model.device == "cpu"
        assert model.dtype == "float32"
        assert model.tokenizer.has_chat_template
        assert not model.has_adapter()

    def test_load_missing_path_is_a_clear_error(self, backend: Backend, tmp_path: Path) -> None:
        with pytest.raises((MindprintError, FileNotFoundError)) as info:
            backend.load_model(tmp_path / "no-such-model")
        assert "no-such-model" in str(info.value)

    @pytest.mark.parametrize("kind", ["text", "messages", "ids"])
    def test_generate_returns_generation(self, model: Model, kind: str) -> None:
        prompt: Any = {"text": PROBE, "messages": [{"role": "user", "content": PROBE}], "ids": _prompt_ids(model)}[kind]
        out = model.generate(prompt, GenerationConfig(max_new_tokens=8))
        assert isinstance(out, Generation)
        assert isinstance(out.text, str)
        assert all(isinstance(t, int) for t in out.token_ids)
        assert 1 <= len(out.token_ids) <= 8
        assert out.finish_reason in ("stop", "length")
        assert out.prompt_tokens == len(_prompt_ids(model))
        again = model.generate(prompt, max_new_tokens=8)
        assert again.token_ids == out.token_ids  # greedy is deterministic

    def test_seeded_sampling_is_reproducible(self, model: Model) -> None:
        self.require(self.supports_generation_seed, "seeded sampling")
        config = GenerationConfig(max_new_tokens=8, temperature=1.0, seed=1234)
        first = model.generate(PROBE, config)
        assert model.generate(PROBE, config).token_ids == first.token_ids

    def test_generate_text_matches_tokens(self, model: Model) -> None:
        out = model.generate(PROBE, max_new_tokens=12)
        ids = [t for t in out.token_ids if t != model.tokenizer.eos_token_id]
        assert out.text == model.tokenizer.decode(ids)

    def test_forward_and_logprobs_agree(self, model: Model) -> None:
        ids = _prompt_ids(model)
        prompt, completion = ids[:-4], ids[-4:]
        out = model.forward([ids], labels=[ids])
        shape = tuple(int(d) for d in out.logits.shape)
        assert shape[:2] == (1, len(ids)) and shape[2] >= len(model.tokenizer.encode("abc"))
        assert out.loss is not None and math.isfinite(out.loss)
        [seq] = model.sequence_logprobs([prompt], [completion])
        chained = 0.0
        for i, token in enumerate(completion):
            chained += model.next_token_logprobs(prompt + completion[:i])[token]
        assert seq == pytest.approx(chained, abs=1e-4)
        # mean CE over the shifted labels equals minus the mean next-token logprob
        [full] = model.sequence_logprobs([ids[:1]], [ids[1:]])
        assert out.loss == pytest.approx(-full / (len(ids) - 1), rel=1e-4)

    def test_batched_logprobs_ignore_padding(self, model: Model) -> None:
        a, b = _prompt_ids(model), _prompt_ids(model, "Hi")
        batched = model.sequence_logprobs([a[:-3], b[:-2]], [a[-3:], b[-2:]])
        single = [model.sequence_logprobs([a[:-3]], [a[-3:]])[0], model.sequence_logprobs([b[:-2]], [b[-2:]])[0]]
        assert batched == pytest.approx(single, abs=1e-4)

    # -- training ------------------------------------------------------------------------------------
    def test_sft_lowers_loss(self, backend: Backend, fresh_model: Model, workdir: Path) -> None:
        rec = StepRecorder()
        trainer = backend.create_sft_trainer(
            fresh_model,
            {"learning_rate": 1e-2, "max_steps": 12, "per_device_batch_size": 4, "output_dir": str(workdir), "seed": 0},
            callbacks=[rec],
        )
        result = trainer.train(SFT_RECORDS)
        assert isinstance(result, TrainingResult)
        assert result.success, result.error_message
        assert result.samples_trained == len(SFT_RECORDS)
        losses = [m["loss"] for _, m in rec.steps]
        assert len(losses) == 12 and [s for s, _ in rec.steps] == list(range(1, 13))
        assert losses[-1] < losses[0] * 0.8
        assert result.final_loss == pytest.approx(losses[-1], rel=1e-5)
        for key in ("loss", "learning_rate", "grad_norm"):
            assert key in result.metrics
        assert trainer.get_model().has_adapter()

    def test_dpo_step0_is_ln2_and_reports_trl_metrics(self, backend: Backend, fresh_model: Model, workdir: Path) -> None:
        self.require(self.supports_dpo, "DPO")
        rec = StepRecorder()
        trainer = backend.create_dpo_trainer(
            fresh_model,
            {"learning_rate": 1e-2, "max_steps": 8, "per_device_batch_size": 4, "beta": 0.1, "output_dir": str(workdir)},
            callbacks=[rec],
        )
        result = trainer.train(PREFERENCES)
        assert result.success, result.error_message
        first = rec.steps[0][1]
        assert first["loss"] == pytest.approx(math.log(2), abs=1e-4)
        assert first["rewards/accuracies"] == 0.0  # strict > as in TRL; rewards are all 0 at step 0
        for key in ("rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "logps/chosen",
                    "logps/rejected", "loss", "learning_rate", "grad_norm"):
            assert key in result.metrics, key
        last = rec.steps[-1][1]
        assert last["rewards/accuracies"] > first["rewards/accuracies"]
        assert last["loss"] < first["loss"]

    @pytest.mark.parametrize("method", ["orpo", "cpo", "kto"])
    def test_preference_method_trains_with_trl_metrics(self, backend: Backend, fresh_model: Model, workdir: Path,
                                                       method: str) -> None:
        self.require(method in self.methods, f"the {method} method")
        rec = StepRecorder()
        cfg = {"learning_rate": 1e-2, "max_steps": 4, "per_device_batch_size": 8 if method == "kto" else 4,
               "beta": 0.5 if method != "kto" else 0.1, "output_dir": str(workdir)}
        result = backend.create_trainer(method, fresh_model, cfg, callbacks=[rec]).train(PREFERENCES)
        assert result.success, result.error_message
        first, last = rec.steps[0][1], rec.steps[-1][1]
        names = {"orpo": ("nll_loss", "log_odds_ratio", "log_odds_chosen"), "cpo": ("nll_loss",),
                 "kto": ("kl", "entropy")}[method]
        for key in ("rewards/chosen", "rewards/rejected", "rewards/margins", "logps/chosen", "logps/rejected",
                    "logits/chosen", "logits/rejected", "loss", "learning_rate", "grad_norm", *names):
            assert key in first, key
        if method == "kto":  # fresh adapter = the reference: rewards and KL 0, every loss 1 - sigmoid(0)
            assert first["loss"] == pytest.approx(0.5, abs=1e-6)
            assert first["kl"] == pytest.approx(0.0, abs=1e-6)
        assert last["loss"] < first["loss"]

    def test_unimplemented_method_names_what_the_backend_has(self, backend: Backend, model: Model) -> None:
        missing = [m for m in method_names() if m not in self.methods]
        if not missing:
            pytest.skip(f"{self.backend_name} implements every registered method")
        with pytest.raises(ConfigError, match="does not implement"):
            backend.create_trainer(missing[0], model, {})

    def test_train_saves_into_the_given_directory(self, backend: Backend, fresh_model: Model, workdir: Path) -> None:
        rec = StepRecorder()
        trainer = backend.create_sft_trainer(
            fresh_model, {"learning_rate": 1e-3, "max_steps": 2, "per_device_batch_size": 2, "output_dir": str(workdir)},
            callbacks=[rec],
        )
        result = trainer.train(SFT_RECORDS[:3], adapter_dir=workdir / "u1/c1/t1")
        assert result.success, result.error_message
        path = Path(result.adapter_path)
        assert path == workdir / "u1/c1/t1"
        assert (path / PEFT_CONFIG).is_file() and (path / PEFT_WEIGHTS).is_file()
        assert path in [Path(p) for p in rec.saves]

    def test_adapter_round_trip(self, backend: Backend, fresh_model: Model, model_dir: Path, workdir: Path) -> None:
        trainer = backend.create_sft_trainer(
            fresh_model, {"learning_rate": 5e-3, "max_steps": 3, "per_device_batch_size": 4, "output_dir": str(workdir)})
        assert trainer.train(SFT_RECORDS).success
        trained = trainer.get_model()
        ids = _prompt_ids(trained)
        expected = trained.next_token_logprobs(ids)
        saved = trainer.save_adapter(workdir / "adapter")
        config = json.loads((saved / PEFT_CONFIG).read_text())
        assert config["r"] == 8 and config["lora_alpha"] == 16
        reloaded = backend.load_model(model_dir, adapter_path=saved)
        assert reloaded.has_adapter()
        assert reloaded.next_token_logprobs(ids) == pytest.approx(expected, abs=1e-5)
        base = backend.load_model(model_dir)
        assert base.next_token_logprobs(ids) != pytest.approx(expected, abs=1e-5)  # the adapter changes the model
        if "mlx" in self.adapter_formats:
            mlx_dir = trained.save_adapter(workdir / "adapter-mlx", format="mlx")
            base.load_adapter(mlx_dir)
            assert base.next_token_logprobs(ids) == pytest.approx(expected, abs=1e-5)

    def test_save_pretrained_reloads_identically(self, backend: Backend, fresh_model: Model, workdir: Path) -> None:
        self.require(self.supports_merge, "merged saving (save_pretrained)")
        trainer = backend.create_sft_trainer(
            fresh_model, {"learning_rate": 5e-3, "max_steps": 2, "per_device_batch_size": 4, "output_dir": str(workdir)})
        assert trainer.train(SFT_RECORDS).success
        trained = trainer.get_model()
        ids = _prompt_ids(trained)
        expected = trained.next_token_logprobs(ids)
        merged_dir = trained.save_pretrained(workdir / "merged")
        assert (merged_dir / "config.json").is_file() and (merged_dir / "model.safetensors").is_file()
        assert trained.has_adapter()  # saving merged weights must not consume the live adapter
        merged = backend.load_model(merged_dir)
        assert not merged.has_adapter()
        assert merged.next_token_logprobs(ids) == pytest.approx(expected, abs=1e-4)

    def test_training_failure_is_reported_not_raised(self, backend: Backend, fresh_model: Model, workdir: Path) -> None:
        good = backend.create_sft_trainer(
            fresh_model, {"learning_rate": 1e-3, "max_steps": 1, "per_device_batch_size": 2, "output_dir": str(workdir)})
        first = good.train(SFT_RECORDS, adapter_dir=workdir / "topic")
        assert first.success
        weights = (Path(first.adapter_path) / PEFT_WEIGHTS).read_bytes()
        exploding = backend.create_sft_trainer(
            good.get_model(),
            {"learning_rate": 1e30, "max_steps": 6, "per_device_batch_size": 2, "max_grad_norm": 0.0,
             "output_dir": str(workdir)},
        )
        result = exploding.train(SFT_RECORDS, adapter_dir=workdir / "topic")
        assert not result.success
        assert result.error_message
        assert (Path(first.adapter_path) / PEFT_WEIGHTS).read_bytes() == weights  # last good adapter kept

    def test_callback_exception_reaches_the_caller(self, backend: Backend, fresh_model: Model, workdir: Path) -> None:
        """A callback's own exception is the user's stop request (or bug), not a training failure to report."""

        class Stop(Exception):
            pass

        class StopAtTwo(BaseCallback):
            def on_step(self, step: int, metrics: Mapping[str, float]) -> None:
                if step == 2:
                    raise Stop("user asked to stop")

        trainer = backend.create_sft_trainer(
            fresh_model, {"learning_rate": 1e-3, "max_steps": 4, "per_device_batch_size": 2, "output_dir": str(workdir)},
            callbacks=[StopAtTwo()])
        with pytest.raises(Stop, match="user asked to stop"):
            trainer.train(SFT_RECORDS)

    supports_resume: bool = True
    """``save_steps`` writes full-state ``checkpoint-<step>/`` directories and ``train(resume_from_checkpoint=...)``
    continues them."""

    def test_resume_continues_the_uninterrupted_run(self, backend: Backend, model_dir: Path, workdir: Path) -> None:
        """Resuming at checkpoint-2 of a 5-step run gives that run's losses at steps 3..5 and its final adapter."""
        self.require(self.supports_resume, "resume_from_checkpoint")
        cfg = {"learning_rate": 5e-3, "max_steps": 5, "per_device_batch_size": 2, "save_steps": 2, "seed": 3,
               "warmup_steps": 1, "output_dir": str(workdir / "run")}
        first = StepRecorder()
        trainer = backend.create_sft_trainer(backend.load_model(model_dir), cfg, callbacks=[first])
        assert trainer.train(SFT_RECORDS).success
        checkpoint = workdir / "run" / "checkpoint-2"
        assert (checkpoint / "adapter_model.safetensors").is_file() and (checkpoint / "trainer_state.json").is_file()
        second = StepRecorder()
        resumed = backend.create_sft_trainer(backend.load_model(model_dir),
                                             {**cfg, "output_dir": str(workdir / "resumed")}, callbacks=[second])
        result = resumed.train(SFT_RECORDS, resume_from_checkpoint=checkpoint)
        assert result.success, result.error_message
        assert [s for s, _ in second.steps] == [3, 4, 5]
        expected = [m["loss"] for s, m in first.steps if s > 2]
        assert [m["loss"] for _, m in second.steps] == pytest.approx(expected, rel=1e-6)
        assert result.metrics["global_step"] == 5

    # -- errors ---------------------------------------------------------------------------------------
    def test_mismatched_model_is_rejected(self, backend: Backend) -> None:
        foreign = type(self.other_model_class_name, (ForeignModel,), {})()
        with pytest.raises(BackendMismatchError, match=f"Expected {self.model_class_name}, got {self.other_model_class_name}"):
            backend.create_sft_trainer(foreign, {})
        if self.supports_dpo:
            with pytest.raises(BackendMismatchError):
                backend.create_dpo_trainer(foreign, {})

    def test_bad_config_key_raises_before_work(self, backend: Backend, model: Model) -> None:
        with pytest.raises(ConfigError, match='did you mean "learning_rate"'):
            backend.create_sft_trainer(model, {"learning_rat": 1e-4})
        if self.supports_dpo:
            with pytest.raises(ConfigError, match="beta"):
                backend.create_dpo_trainer(model, {"beta": 0})

    def test_bad_data_raises_before_work(self, backend: Backend, fresh_model: Model, workdir: Path) -> None:
        trainer = backend.create_sft_trainer(fresh_model, {"max_steps": 1, "output_dir": str(workdir)})
        with pytest.raises(DataValidationError) as info:
            trainer.train([{"question": "q", "answer": "a"}, {"question": 3, "answer": "a"}])
        assert info.value.line == 2 and info.value.field == "question"
        if self.supports_dpo:
            dpo = backend.create_dpo_trainer(fresh_model, {"max_steps": 1, "output_dir": str(workdir)})
            with pytest.raises(DataValidationError):
                dpo.train([{"prompt": "q", "chosen": "a"}])

    # -- registration -----------------------------------------------------------------------------------
    def test_registered_launcher_and_rank_variables(self) -> None:
        self.require(self.supports_distributed, "data-parallel launching")
        spec = BackendRegistry.spec(self.backend_name)
        inner = [sys.executable, "-m", "some_module", "--flag"]
        command = spec.launch_command(2, inner)
        assert command and all(isinstance(part, str) for part in command)
        assert "2" in command
        assert command[-3:] == inner[-3:]  # the per-process arguments reach every process unchanged
        assert spec.launch_env and spec.rank_env
        assert spec.launched({name: "2" for name in spec.launch_env})
        assert not spec.launched({})
        assert spec.rank({spec.rank_env: "1"}) == 1

    def test_registered_converter_matches_saved_layout(self, backend: Backend, fresh_model: Model,
                                                       model_dir: Path, workdir: Path) -> None:
        self.require("mlx" in self.adapter_formats, "the mlx adapter layout")
        spec = BackendRegistry.spec(self.backend_name)
        self.require(spec.has_converter, "adapter conversion")
        trainer = backend.create_sft_trainer(
            fresh_model, {"learning_rate": 5e-3, "max_steps": 2, "per_device_batch_size": 4, "output_dir": str(workdir)})
        assert trainer.train(SFT_RECORDS).success
        trained = trainer.get_model()
        ids = _prompt_ids(trained)
        expected = trained.next_token_logprobs(ids)
        converted = spec.convert(trainer.save_adapter(workdir / "peft"), workdir / "converted", to="mlx")
        base = backend.load_model(model_dir)
        base.load_adapter(converted)
        assert base.next_token_logprobs(ids) == pytest.approx(expected, abs=1e-5)
