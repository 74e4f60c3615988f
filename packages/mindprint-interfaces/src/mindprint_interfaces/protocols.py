"""The structural contracts every backend implements.

They are ``typing.Protocol`` classes, not base classes: a backend satisfies them by shape,
and mypy proves it statically (``_: Backend = TorchBackend(...)`` in the backend's
``_conformance.py``). Array types are ``Any`` because each backend has its own
(torch.Tensor / mx.array) and this package must not import either.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from .configs import AdapterConfig, BackendConfig, DPOConfig, GenerationConfig, SFTConfig
from .messages import Message
from .results import ForwardOutput, Generation, TrainingResult

PathLike = str | Path
Prompt = str | Sequence[int] | Sequence[Message]


@runtime_checkable
class Tokenizer(Protocol):
    """What the data layer needs from a tokenizer (both backends wrap the same HF tokenizer)."""

    @property
    def eos_token_id(self) -> int | None: ...
    @property
    def pad_token_id(self) -> int | None: ...
    @property
    def bos_token_id(self) -> int | None: ...
    @property
    def has_chat_template(self) -> bool: ...

    def encode(self, text: str, *, add_special_tokens: bool = False) -> list[int]: ...
    def decode(self, token_ids: Sequence[int], *, skip_special_tokens: bool = True) -> str: ...
    def apply_chat_template(self, messages: Sequence[Mapping[str, object]], *, add_generation_prompt: bool = False) -> str: ...


class TrainerCallback(Protocol):
    """Progress hooks; all optional in practice (implement the ones you need, see ``BaseCallback``)."""

    def on_step(self, step: int, metrics: Mapping[str, float]) -> None: ...
    def on_save(self, path: Path) -> None: ...


class DeviceManager(Protocol):
    @property
    def device(self) -> str: ...  # resolved device name: "cpu", "cuda", "cuda:1", "mps", "metal"
    @property
    def dtype(self) -> str: ...  # resolved dtype name: "float32", "bfloat16", "float16"

    def available_devices(self) -> list[str]: ...
    def memory_info(self) -> dict[str, float]: ...  # bytes; keys like "used", "peak", "total"
    def synchronize(self) -> None: ...


class AdapterManager(Protocol):
    def add_adapter(self, model: "Model", config: AdapterConfig) -> None: ...
    def save(self, model: "Model", path: PathLike, *, format: str = "peft") -> Path: ...
    def load(self, model: "Model", path: PathLike) -> None: ...
    def convert(self, src: PathLike, dst: PathLike, *, to: str) -> Path: ...


@runtime_checkable
class Model(Protocol):
    """A causal LM with (optionally) LoRA adapters, on one backend."""

    @property
    def backend_name(self) -> str: ...
    @property
    def tokenizer(self) -> Tokenizer: ...
    @property
    def device(self) -> str: ...
    @property
    def dtype(self) -> str: ...
    @property
    def num_layers(self) -> int: ...

    def encode_prompt(self, prompt: Prompt) -> list[int]: ...
    def generate(self, prompt: Prompt, config: GenerationConfig | None = None, **overrides: Any) -> Generation: ...
    def forward(self, input_ids: Sequence[Sequence[int]], labels: Sequence[Sequence[int]] | None = None,
                attention_mask: Sequence[Sequence[int]] | None = None) -> ForwardOutput: ...
    def sequence_logprobs(self, prompts: Sequence[Sequence[int]], completions: Sequence[Sequence[int]]) -> list[float]: ...
    def next_token_logprobs(self, input_ids: Sequence[int]) -> list[float]: ...
    def save_pretrained(self, path: PathLike) -> Path: ...
    def load_adapter(self, path: PathLike) -> None: ...
    def save_adapter(self, path: PathLike, format: str = "peft") -> Path: ...
    def has_adapter(self) -> bool: ...
    def stream(self, prompt: Prompt, config: GenerationConfig | None = None, **overrides: Any) -> Iterator[str]:
        """``generate``'s answer as text pieces while tokens are generated (same stop/EOS rules: the pieces
        concatenate to ``generate(...).text`` for greedy decoding)."""
        ...
    def export_gguf(self, path: PathLike, quant: str = "f16", *, ollama: bool = False) -> Any:
        """Merge (verified), write a GGUF file for llama.cpp/Ollama and verify it; returns a
        ``mindprint_kit.gguf_export.GGUFExportReport``."""
        ...


@runtime_checkable
class Trainer(Protocol):
    """Trains a model's LoRA adapter on records; ``mindprint_kit.trainer.KitTrainer`` implements it once."""

    def train(self, train_data: Sequence[Mapping[str, Any]], *,
              adapter_dir: PathLike | None = None,
              resume_from_checkpoint: PathLike | bool | None = None) -> TrainingResult:
        """Train; the adapter is saved to ``adapter_dir`` (default ``<config.output_dir>/adapter``).

        ``resume_from_checkpoint``: a ``checkpoint-<step>`` directory written every ``save_steps`` (by any
        backend), or True for the newest under ``output_dir``: continue that run at its step (optimizer state,
        schedule position, data order, RNG); a checkpoint of another run raises ConfigError naming what differs."""
        ...
    def batch_gradients(self, train_data: Sequence[Mapping[str, Any]]) -> tuple[float, dict[str, Any]]:
        """Loss and gradients of ONE optimizer step over all of ``train_data`` (no update): numpy arrays keyed
        by PEFT parameter names in PEFT orientation, so backends can be compared gradient by gradient."""
        ...
    def save_adapter(self, path: PathLike) -> Path: ...
    def get_model(self) -> Model: ...


@runtime_checkable
class Backend(Protocol):
    name: str
    config: BackendConfig

    @property
    def device_manager(self) -> DeviceManager: ...
    @property
    def adapter_manager(self) -> AdapterManager: ...

    def load_model(self, model_path: PathLike, tokenizer_path: PathLike | None = None,
                   adapter_path: PathLike | None = None) -> Model: ...
    def create_trainer(self, method: str, model: Model, config: Any = None, ref_model: Model | None = None,
                       *, callbacks: Sequence[TrainerCallback] = ()) -> Trainer:
        """A trainer for a registered method (``mindprint_interfaces.methods``: "sft", "dpo", ...)."""
        ...
    def create_sft_trainer(self, model: Model, config: SFTConfig | Mapping[str, Any],
                           *, callbacks: Sequence[TrainerCallback] = ()) -> Trainer: ...
    def create_dpo_trainer(self, model: Model, config: DPOConfig | Mapping[str, Any], ref_model: Model | None = None,
                           *, callbacks: Sequence[TrainerCallback] = ()) -> Trainer: ...


class Evaluator(Protocol):
    """Scores a model on a topic: returns at least ``accuracy`` and ``voice`` in [0, 1]."""

    def evaluate(self, model: Model, records: Sequence[Mapping[str, Any]]) -> Mapping[str, float]: ...


class BaseCallback:
    """A TrainerCallback that does nothing; subclass and override what you need."""

    def on_step(self, step: int, metrics: Mapping[str, float]) -> None:
        return None

    def on_save(self, path: Path) -> None:
        return None
