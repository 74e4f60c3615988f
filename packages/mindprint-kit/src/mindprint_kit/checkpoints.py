"""Full-state checkpoints mid-run, the same files on every backend, so a run can resume anywhere.

``<output_dir>/checkpoint-<step>/`` (written every ``save_steps``; ``save_total_limit`` keeps the newest N):

* ``adapter_model.safetensors`` + ``adapter_config.json`` — the adapter in the PEFT layout, by the backend's
  own adapter writer (so it records its base model, see :mod:`.adapter_files`);
* ``optimizer.safetensors`` — AdamW's first/second moments per LoRA parameter, keyed
  ``<PEFT parameter name>.exp_avg`` / ``.exp_avg_sq`` (``LoraKey.peft_parameter()``, PEFT orientation:
  ``lora_A`` (r, in), ``lora_B`` (out, r)), fp32; the step count in the metadata (``step``);
* ``rng_state.safetensors`` — the random generators the rest of the run draws from (dropout), keyed by
  backend (``torch.cpu``, ``numpy.*``, ``python.state``, ``mlx.key``); a backend restores its own keys;
* ``trainer_state.json`` — HF ``TrainerState`` field names only (``global_step``, ``epoch``, ``max_steps``,
  ``log_history`` = the metric history, ...), so the HF Trainer reads it as its own;
* ``reference/`` (DPO/KTO with ``reference: initial_policy`` only) — the adapter as it was when the run started,
  in the PEFT layout: the fixed reference a resumed run computes its reference log-probs from (the policy has
  moved on by then). ``reference: model`` stores no weights; the fingerprint holds a content hash of the
  reference model (:func:`reference_model_record`) so a changed reference is refused;
* ``mindprint_state.json`` — written last: the format version, the scheduler position, the data-order
  position (the kit plan's epoch, step in epoch and that epoch's permutation), the run counters, the
  fingerprint (base model record, LoRA shape/targets, a content hash of the tokenized set, the training keys
  that change what is trained) and the sha256 of every other file.

The directory is written to a temporary sibling and renamed (:func:`mindprint_interfaces.fileio.atomic_directory`);
:func:`load_checkpoint` refuses a directory whose files are missing or do not match the recorded hashes,
so a half-written or half-copied checkpoint is never accepted.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file, save_file

from mindprint_interfaces import AdapterConfig, AdapterFormatError, ConfigError, checkpoint_layout
from mindprint_interfaces.configs import TrainConfigBase
from mindprint_interfaces.fileio import atomic_directory, recover_directory

from . import schedule
from .adapter_files import check_base

FORMAT_VERSION = 1
PREFIX = checkpoint_layout.PREFIX  # checkpoint-<step>/ (the names are shared with the pipeline)
STATE_FILE = checkpoint_layout.STATE_FILE
OPTIMIZER_FILE = "optimizer.safetensors"
RNG_FILE = "rng_state.safetensors"
TRAINER_STATE_FILE = "trainer_state.json"
ADAPTER_FILES = ("adapter_model.safetensors", "adapter_config.json")
REFERENCE_DIR = "reference"  # the initial policy (reference: initial_policy), PEFT layout
_NAME = checkpoint_layout.NAME  # checkpoint-<step>

# Settings that do not change what is trained: they may differ between the run and its resume.
FREE_KEYS = frozenset({"output_dir", "logging_steps", "save_steps", "save_total_limit", "gradient_checkpointing"})
# LoRA settings: compared as "LoRA shape/targets" (from the live adapter, so presets are resolved).
LORA_KEYS = frozenset({"lora_r", "lora_alpha", "lora_dropout", "target_modules", "lora_layers"})

Moments = dict[str, dict[str, np.ndarray]]  # PEFT parameter name -> {"exp_avg": ..., "exp_avg_sq": ...}


def _jsonable(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


def training_keys(config: TrainConfigBase) -> dict[str, Any]:
    """The config fields that change what is trained (everything but :data:`FREE_KEYS` and the LoRA fields).

    With LoRA dropout on, activation checkpointing counts too: recomputing a layer draws its dropout mask again
    (measured on MLX: the losses after the first recomputed step differ by ~2e-3 relative)."""
    free = FREE_KEYS - {"gradient_checkpointing"} if config.lora_dropout > 0 else FREE_KEYS
    return {f.name: _jsonable(getattr(config, f.name)) for f in dataclasses.fields(config)
            if f.name not in free and f.name not in LORA_KEYS}


def lora_shape(config: AdapterConfig) -> dict[str, Any]:
    return {"r": int(config.r), "alpha": float(config.alpha), "dropout": float(config.dropout),
            "target_modules": sorted(config.target_modules),
            "layers": None if config.layers is None else sorted(config.layers)}


def data_hash(examples: Sequence[Any]) -> str:
    """sha256 of the tokenized training set (every field of every example, in order)."""
    digest = hashlib.sha256()
    for example in examples:
        fields = (dataclasses.asdict(example) if dataclasses.is_dataclass(example) and not isinstance(example, type)
                  else example)
        digest.update(json.dumps(_jsonable(fields), sort_keys=True, default=str).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def fingerprint(method: str, config: TrainConfigBase, adapter: AdapterConfig, examples: Sequence[Any]) -> dict[str, Any]:
    """What a checkpoint must agree on with the run that resumes it (the base model is checked separately)."""
    return {"method": method, "lora": lora_shape(adapter), "data": {"sha256": data_hash(examples),
                                                                     "examples": len(examples)},
            "training": training_keys(config)}


def data_order(config: TrainConfigBase, num_examples: int, global_batch: int, global_step: int,
               shuffle: bool = True) -> dict[str, Any]:
    """Where the kit plan (:func:`mindprint_kit.schedule.plan_steps`) stands after ``global_step`` steps."""
    per_epoch = schedule.steps_per_epoch(num_examples, global_batch, config.gradient_accumulation_steps)
    epoch, in_epoch = divmod(global_step, per_epoch)
    order = (np.random.default_rng(config.seed + epoch).permutation(num_examples).tolist() if shuffle
             else list(range(num_examples)))
    return {"plan": "mindprint_kit.schedule.plan_steps", "seed": config.seed, "shuffle": shuffle,
            "steps_per_epoch": per_epoch, "epoch": epoch, "step_in_epoch": in_epoch, "permutation": order}


@dataclass
class CheckpointData:
    """Everything a backend hands over at a save (and gets back at a resume)."""

    global_step: int
    total_steps: int
    epoch: float
    history: list[dict[str, float]]
    moments: Moments
    optimizer_step: int
    rng: dict[str, np.ndarray]
    backend: str
    fingerprint: dict[str, Any]
    base: dict[str, Any]
    learning_rate: float  # the LR of the next step's schedule position is derived; this is the last one used
    counters: dict[str, Any] = field(default_factory=dict)  # samples_seen, samples_trained, num_tokens
    order: dict[str, Any] = field(default_factory=dict)
    train_batch_size: int = 0
    logging_steps: int = 1
    save_steps: int = 0
    num_train_epochs: float = 1.0


@dataclass
class Checkpoint:
    path: Path
    data: CheckpointData
    files: tuple[str, ...] = ()  # every file the checkpoint recorded (relative paths)

    @property
    def reference(self) -> Path | None:
        """The stored initial-policy adapter (``reference/``), when the checkpoint has one."""
        names = {f"{REFERENCE_DIR}/{n}" for n in ADAPTER_FILES}
        return self.path / REFERENCE_DIR if names <= set(self.files) else None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def checkpoint_dirs(root: str | Path) -> list[tuple[int, Path]]:
    """``checkpoint-<step>`` directories under ``root``, oldest first (no validation)."""
    base = Path(root)
    if not base.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in base.iterdir() if p.is_dir() and (m := _NAME.match(p.name))]
    return sorted(found)


def write_checkpoint(root: str | Path, data: CheckpointData, write_adapter: Callable[[Path], None], *,
                     limit: int | None = None, reference: Mapping[str, bytes] | None = None) -> Path:
    """Write ``<root>/checkpoint-<step>`` atomically, then prune to the newest ``limit`` (None/0: keep all).

    ``reference``: the initial policy's adapter files (name -> bytes), stored under ``reference/``."""
    target = Path(root) / f"{PREFIX}{data.global_step}"
    with atomic_directory(target) as tmp:
        staging = tmp / "adapter"
        write_adapter(staging)
        for name in ADAPTER_FILES:
            (staging / name).replace(tmp / name)
        shutil.rmtree(staging)
        if reference:
            (tmp / REFERENCE_DIR).mkdir()
            for name, content in sorted(reference.items()):
                (tmp / REFERENCE_DIR / name).write_bytes(content)
        tensors: dict[str, np.ndarray] = {}
        for name, moments in sorted(data.moments.items()):
            for kind in ("exp_avg", "exp_avg_sq"):
                tensors[f"{name}.{kind}"] = np.ascontiguousarray(moments[kind], dtype=np.float32)
        save_file(tensors, str(tmp / OPTIMIZER_FILE), metadata={"step": str(data.optimizer_step), "format": "mindprint"})
        save_file({k: np.ascontiguousarray(v) for k, v in data.rng.items()}, str(tmp / RNG_FILE),
                  metadata={"backend": data.backend})
        trainer_state = {
            "epoch": data.epoch, "global_step": data.global_step, "max_steps": data.total_steps,
            "logging_steps": data.logging_steps, "eval_steps": 500, "save_steps": data.save_steps,
            "train_batch_size": data.train_batch_size, "num_train_epochs": data.num_train_epochs,
            "num_input_tokens_seen": int(data.counters.get("num_tokens", 0)), "total_flos": 0.0,
            "log_history": data.history, "best_metric": None, "best_global_step": None,
            "best_model_checkpoint": None, "is_local_process_zero": True, "is_world_process_zero": True,
            "is_hyper_param_search": False, "trial_name": None, "trial_params": None, "stateful_callbacks": {},
        }
        (tmp / TRAINER_STATE_FILE).write_text(json.dumps(trainer_state, indent=2) + "\n", encoding="utf-8")
        files = {p.relative_to(tmp).as_posix(): _sha256(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
        state = {
            "format": FORMAT_VERSION, "backend": data.backend, "global_step": data.global_step,
            "total_steps": data.total_steps, "optimizer_step": data.optimizer_step,
            "scheduler": {"last_epoch": data.global_step, "learning_rate": data.learning_rate},
            "data_order": data.order, "counters": data.counters, "fingerprint": data.fingerprint,
            "base": data.base, "files": files,
        }
        (tmp / STATE_FILE).write_text(json.dumps(state, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    if limit:
        for _, old in checkpoint_dirs(root)[:-limit]:
            shutil.rmtree(old, ignore_errors=True)
    return target


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read and verify a checkpoint directory; a missing, unfinished or altered one raises ConfigError."""
    directory = Path(path)
    where = f"resume_from_checkpoint: {directory}"
    if not directory.is_dir():
        raise ConfigError(f"{where}: not a directory", key="resume_from_checkpoint")
    recover_directory(directory)  # finish or roll back a swap a kill interrupted
    try:
        state = json.loads((directory / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{where}: not a complete mindprint checkpoint ({STATE_FILE}: {exc})",
                          key="resume_from_checkpoint") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT_VERSION:
        raise ConfigError(f"{where}: unknown checkpoint format {state.get('format') if isinstance(state, dict) else '?'}"
                          f" (this mindprint reads format {FORMAT_VERSION})", key="resume_from_checkpoint")
    for name, digest in dict(state.get("files") or {}).items():
        file = directory / name
        if not file.is_file() or _sha256(file) != digest:
            raise ConfigError(f"{where}: {name} is missing or differs from what the checkpoint recorded "
                              "(an unfinished copy?)", key="resume_from_checkpoint")
    required = (*ADAPTER_FILES, OPTIMIZER_FILE, RNG_FILE, TRAINER_STATE_FILE)
    missing = [n for n in required if n not in (state.get("files") or {})]
    if missing:
        raise ConfigError(f"{where}: incomplete checkpoint, missing {', '.join(missing)}", key="resume_from_checkpoint")
    trainer_state = json.loads((directory / TRAINER_STATE_FILE).read_text(encoding="utf-8"))
    from safetensors import safe_open

    with safe_open(str(directory / OPTIMIZER_FILE), framework="numpy") as fh:
        meta = fh.metadata() or {}
    tensors = load_file(str(directory / OPTIMIZER_FILE))
    moments: Moments = {}
    for key, value in tensors.items():
        name, _, kind = key.rpartition(".")
        moments.setdefault(name, {})[kind] = value
    data = CheckpointData(
        global_step=int(state["global_step"]), total_steps=int(state["total_steps"]),
        epoch=float(trainer_state.get("epoch") or 0.0), history=list(trainer_state.get("log_history") or []),
        moments=moments, optimizer_step=int(meta.get("step") or state.get("optimizer_step") or 0),
        rng=dict(load_file(str(directory / RNG_FILE))), backend=str(state.get("backend", "")),
        fingerprint=dict(state.get("fingerprint") or {}), base=dict(state.get("base") or {}),
        learning_rate=float((state.get("scheduler") or {}).get("learning_rate", 0.0)),
        counters=dict(state.get("counters") or {}), order=dict(state.get("data_order") or {}),
        train_batch_size=int(trainer_state.get("train_batch_size") or 0),
    )
    return Checkpoint(directory, data, tuple(sorted(dict(state.get("files") or {}))))


def latest_checkpoint(root: str | Path) -> Path | None:
    """The newest complete checkpoint under ``root`` (incomplete ones are skipped), or None."""
    for _, path in reversed(checkpoint_dirs(root)):
        try:
            load_checkpoint(path)
        except ConfigError:
            continue
        return path
    return None


def resolve(resume: str | Path | bool, root: str | Path) -> Checkpoint:
    """``True`` = the newest complete checkpoint under ``root``; a path = that checkpoint."""
    if resume is True:
        found = latest_checkpoint(root)
        if found is None:
            raise ConfigError(f"resume_from_checkpoint: no complete checkpoint-<step> directory in {root}",
                              key="resume_from_checkpoint")
        return load_checkpoint(found)
    if resume is False:
        raise ConfigError("resume_from_checkpoint: False means do not resume", key="resume_from_checkpoint")
    return load_checkpoint(resume)


def _show(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def check_resumable(checkpoint: Checkpoint, current: Mapping[str, Any], base: Mapping[str, Any]) -> None:
    """Raise ConfigError naming every way this run differs from the one that wrote ``checkpoint``."""
    saved = checkpoint.data.fingerprint
    where = f"resume_from_checkpoint: {checkpoint.path}"
    problems: list[str] = []
    try:
        check_base(checkpoint.path, base, allow_other_base=False)
    except AdapterFormatError as exc:
        problems.append("another base model (" + str(exc).split("another base model: ", 1)[-1].split("; set ")[0] + ")")
    if saved.get("method") != current.get("method"):
        problems.append(f"training method {saved.get('method')} (checkpoint) vs {current.get('method')}")
    lora_a, lora_b = saved.get("lora") or {}, current.get("lora") or {}
    for key in sorted(set(lora_a) | set(lora_b)):
        if lora_a.get(key) != lora_b.get(key):
            problems.append(f"LoRA {key} {_show(lora_a.get(key))} (checkpoint) vs {_show(lora_b.get(key))}")
    data_a, data_b = saved.get("data") or {}, current.get("data") or {}
    if data_a != data_b:
        problems.append(f"changed data: the tokenized training set differs ({data_a.get('examples')} examples, "
                        f"sha256 {str(data_a.get('sha256'))[:12]} in the checkpoint vs {data_b.get('examples')}, "
                        f"{str(data_b.get('sha256'))[:12]} now)")
    ref_a, ref_b = saved.get("reference"), current.get("reference")
    if _reference_key(ref_a) != _reference_key(ref_b):
        problems.append(f"another reference model ({_describe_reference(ref_a)} in the checkpoint vs "
                        f"{_describe_reference(ref_b)} now)")
    keys_a, keys_b = saved.get("training") or {}, current.get("training") or {}
    for key in sorted(set(keys_a) | set(keys_b)):
        if keys_a.get(key) != keys_b.get(key):
            problems.append(f"training key {key}: {_show(keys_a.get(key))} (checkpoint) vs {_show(keys_b.get(key))}")
    if problems:
        raise ConfigError(f"{where}: cannot resume this run from it: " + "; ".join(problems),
                          key="resume_from_checkpoint")


# -- the reference model of DPO/KTO (reference: model) -------------------------------------------------------------
def reference_model_record(model_dir: str | Path, adapter: Mapping[Any, tuple[np.ndarray, np.ndarray]] | None
                           ) -> dict[str, Any]:
    """A backend-neutral fingerprint of an explicit reference model: sha256 of its weight files (``*.safetensors``
    and ``config.json`` of ``model_dir``) and of its LoRA adapter's weights (PEFT orientation, fp32), if any.

    The path is kept for messages only: a copied run directory (another machine) still resumes."""
    directory = Path(model_dir)
    digest = hashlib.sha256()
    names = sorted(p.name for p in directory.iterdir() if p.is_file() and (p.suffix == ".safetensors"
                                                                          or p.name == "config.json")) \
        if directory.is_dir() else []
    for name in names:
        digest.update(name.encode() + b"\0" + _sha256(directory / name).encode())
    adapter_digest = None
    if adapter:
        lora = hashlib.sha256()
        for site in sorted(adapter):
            for array in adapter[site]:
                value = np.ascontiguousarray(array, dtype=np.float32)
                lora.update(json.dumps([_jsonable(site), list(value.shape)]).encode())
                lora.update(value.tobytes())
        adapter_digest = lora.hexdigest()
    return {"path": str(model_dir), "weights_sha256": digest.hexdigest() if names else None,
            "adapter_sha256": adapter_digest}


def _reference_key(record: Any) -> Any:
    """What must agree: the hashes (not the path, which a copied run directory changes)."""
    if not isinstance(record, Mapping):
        return record
    return {k: v for k, v in record.items() if k != "path"}


def _describe_reference(record: Any) -> str:
    if not isinstance(record, Mapping):
        return "none"
    parts = [f"weights sha256 {str(record.get('weights_sha256'))[:12]}"]
    if record.get("adapter_sha256"):
        parts.append(f"adapter sha256 {str(record.get('adapter_sha256'))[:12]}")
    return f"{record.get('path')}: " + ", ".join(parts)
