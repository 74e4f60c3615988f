"""The ``mindprint`` sub-commands (the parser lives in :mod:`cli`)."""

from __future__ import annotations

import argparse
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from rich.table import Table

from mindprint_interfaces import BackendNotFoundError, ConfigError, DataValidationError, MindprintError
from mindprint_interfaces.phases import phase
from mindprint_interfaces.registry import BackendRegistry, canonical_name

from .args_config import config_from_args, generation_from_args
from .backend_setup import load_model, make_backend
from .chat_command import cmd_chat
from .config import DataSection, TrainerConfig
from .export_command import cmd_export
from .progress import ProgressDisplay, steps_for
from .run_output import console, err_console, finish_run, open_run
from .rundir import TopicRow
from .truncation import truncation_note


class TrainingFailed(MindprintError):
    """A training run returned ``success=False`` (exit code 1)."""


# --------------------------------------------------------------------------------------------
# shared helpers


def sft_records(path: Path, data: DataSection | None = None) -> list[dict[str, Any]]:
    """Validated SFT records as raw dicts (every bad line reported with file:line, dataset rows as row N)."""
    return _records(path, "sft", data)


def preference_records(path: Path, data: DataSection | None = None) -> list[dict[str, Any]]:
    return _records(path, "preference", data)


def _records(path: Path, kind: Literal["sft", "preference"], data: DataSection | None) -> list[dict[str, Any]]:
    from .dataset_input import read_records

    data = data or DataSection()
    return read_records(path, kind, columns=data.columns, split=data.split, revision=data.revision)


def unpaired_records(path: Path) -> list[dict[str, Any]]:
    """KTO records {prompt, completion, label} (or preference pairs, unpaired), every bad line reported."""
    from mindprint_interfaces.data import load_unpaired_jsonl, read_jsonl

    load_unpaired_jsonl(path)
    return [obj for _, obj in read_jsonl(path)]


def data_file(cfg: TrainerConfig, arg: str | None, name: str | None, what: str) -> Path:
    if arg:
        return Path(arg)
    path = cfg.data.resolve(name)
    if path is None:
        raise ConfigError(f"no {what} file: pass --data or set data.{what}_file", key=f"data.{what}_file")
    return path


def _fmt_time(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


# --------------------------------------------------------------------------------------------
# sft / dpo


def _train_single(args: argparse.Namespace, stage: str) -> int:
    opened: list[Any] = []  # the run directory, once opened
    try:
        return _train_single_run(args, stage, opened)
    except (ConfigError, DataValidationError):
        for run in opened:
            run.discard_if_unused()  # refused before any work: no empty run directory is left behind
        raise


def _train_single_run(args: argparse.Namespace, stage: str, opened: list[Any]) -> int:
    cfg = config_from_args(args)
    resume_from = None
    if getattr(args, "resume", None):
        from .resume_arg import resolve_resume

        resume_from = resolve_resume(args.resume)
    if stage == "sft":
        path = data_file(cfg, args.data, cfg.data.sft_file, "sft")
        records = sft_records(path, cfg.data)
    else:
        path = data_file(cfg, args.data, cfg.data.preference_file, "preference")
        records = unpaired_records(path) if stage == "kto" else preference_records(path, cfg.data)
    backend = make_backend(cfg)
    run = open_run(cfg, stage)
    opened.append(run)
    work = run.path / "work"
    train_cfg = cfg.method_config(stage, output_dir=str(work))
    total = steps_for(len(records), train_cfg.per_device_batch_size, train_cfg.gradient_accumulation_steps,
                      train_cfg.num_epochs, train_cfg.max_steps)
    err_console.print(f"{stage.upper()} on {backend.name} ({backend.device_manager.device}, "
                      f"{backend.device_manager.dtype}): {len(records)} records from {path}, ~{total} steps")
    if resume_from is not None:
        err_console.print(f"resuming from {resume_from}")
    model = load_model(backend, cfg)
    started = time.time()
    adapter_dir = run.adapters_dir / stage
    with ProgressDisplay(run) as display:
        callback = display.trainer_callback(stage, None, total)
        if stage == "sft":
            trainer = backend.create_sft_trainer(model, cfg.sft_config(output_dir=str(work)), callbacks=[callback])
        elif stage == "dpo":
            trainer = backend.create_dpo_trainer(model, cfg.dpo_config(output_dir=str(work)), callbacks=[callback])
        else:
            trainer = backend.create_trainer(stage, model, train_cfg, callbacks=[callback])
        try:
            result = trainer.train(records, resume_from_checkpoint=resume_from)
        except KeyboardInterrupt:
            display.stop()
            saved = trainer.save_adapter(run.adapters_dir / f"{stage}-interrupted")
            finish_run(run, f"mindprint {stage} (interrupted)", facts={"adapter": saved})
            err_console.print(f"interrupted: the adapter trained so far is in {saved}")
            raise
        display.finish_task(stage, None)
    elapsed = time.time() - started
    facts: dict[str, Any] = {"backend": backend.name, "device": backend.device_manager.device,
                             "model": cfg.model.path, "data": str(path), "records": len(records),
                             "samples trained": result.samples_trained, "final loss": f"{result.final_loss:.4f}",
                             "training time": _fmt_time(result.training_time_seconds)}
    note = truncation_note(result.metrics, train_cfg.max_length, str(path))
    if note is not None:
        facts["truncation"] = note
        err_console.print(f"warning: {note}")
    if not result.success:
        finish_run(run, f"mindprint {stage} (failed)", facts={**facts, "error": result.error_message})
        raise TrainingFailed(f"{stage.upper()} failed: {result.error_message} (run directory: {run.path})")
    saved = trainer.save_adapter(adapter_dir)
    shutil.rmtree(work, ignore_errors=True)  # the trainer's own copies; the adapter is in adapters/
    facts["adapter"] = str(saved)
    row = TopicRow(topic=str(path.name), status="trained", attempts=1, seconds=elapsed, dpo=stage != "sft",
                   method="dpo" if stage == "sft" else stage)
    finish_run(run, f"mindprint {stage}", topics=[row], facts=facts)
    console.print(f"{stage.upper()} done: final loss {result.final_loss:.4f} in {_fmt_time(elapsed)}; adapter: {saved}")
    return 0


def cmd_sft(args: argparse.Namespace) -> int:
    return _train_single(args, "sft")


def cmd_dpo(args: argparse.Namespace) -> int:
    return _train_single(args, "dpo")


def cmd_orpo(args: argparse.Namespace) -> int:
    return _train_single(args, "orpo")


def cmd_cpo(args: argparse.Namespace) -> int:
    return _train_single(args, "cpo")


def cmd_kto(args: argparse.Namespace) -> int:
    return _train_single(args, "kto")


# --------------------------------------------------------------------------------------------
# generate / eval / merge / convert-adapter


def cmd_generate(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    gen = generation_from_args(cfg, args)
    backend = make_backend(cfg)
    model = load_model(backend, cfg)
    from .cli_inputs import prompt_text

    text = prompt_text(list(args.prompt))
    prompt: Any = text if args.raw else [{"role": "user", "content": text}]
    out = model.generate(prompt, gen)
    print(out.text.strip())
    return 0


def _evaluator(markers: str | Path | None, max_new_tokens: int) -> Any:
    from mindprint_interfaces import GenerationConfig
    from mindprint_pipeline.evaluation import DefaultEvaluator

    return DefaultEvaluator.from_files(markers, generation=GenerationConfig(max_new_tokens=max_new_tokens))


def group_by_topic(records: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for rec in records:
        topic = rec.get("topic_id") or rec.get("source") or "all"
        groups.setdefault(str(topic), []).append(rec)
    return groups


def cmd_eval(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    path = data_file(cfg, args.data, cfg.data.quiz_file or cfg.data.sft_file, "quiz")
    records = sft_records(path, cfg.data)
    markers = args.markers or cfg.data.resolve(cfg.data.markers_file)
    if markers is not None and not Path(markers).is_file():
        if args.markers:
            raise ConfigError(f"markers file {markers} not found", key="data.markers_file")
        markers = None
    evaluator = _evaluator(markers, cfg.pipeline.eval_max_new_tokens)
    backend = make_backend(cfg)
    model = load_model(backend, cfg)
    run = open_run(cfg, "eval")
    rows: list[TopicRow] = []
    answers: list[dict[str, Any]] = []
    for topic, recs in group_by_topic(records).items():
        started = time.time()
        with phase("evaluate", detail=f"{topic} ({len(recs)} questions)"):
            scores = evaluator.evaluate(model, recs)
        rows.append(TopicRow(topic, "evaluated", float(scores["accuracy"]), float(scores["voice"]), 1,
                             time.time() - started))
        answers += [{"topic": topic, **o} for o in evaluator.last_outputs]
    from mindprint_interfaces.data import write_jsonl

    write_jsonl(run.path / "answers.jsonl", answers)
    table = Table(title=f"evaluation of {cfg.model.path}" + (f" + {cfg.model.adapter}" if cfg.model.adapter else ""))
    for col in ("topic", "accuracy", "voice", "questions", "time"):
        table.add_column(col)
    counts = {t: len(r) for t, r in group_by_topic(records).items()}
    for row in rows:
        table.add_row(row.topic, f"{row.accuracy:.2f}", f"{row.voice:.2f}", str(counts[row.topic]), f"{row.seconds:.1f} s")
    console.print(table)
    finish_run(run, "mindprint eval", topics=rows, facts={"backend": backend.name, "model": cfg.model.path,
                                                          "adapter": cfg.model.adapter, "data": str(path)})
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    if not cfg.model.adapter:
        raise ConfigError("merge needs an adapter: pass --adapter DIR (or set model.adapter)", key="model.adapter")
    from .cli_inputs import check_merge_target

    check_merge_target(args.output, force=bool(getattr(args, "force", False)))
    backend = make_backend(cfg)
    model = load_model(backend, cfg)
    with phase("merge", detail=f"{cfg.model.adapter} into {cfg.model.path} (verified)"):
        out = model.save_pretrained(args.output)
    console.print(f"merged model written to {out} (logits verified against the adapter model)")
    return 0


def find_converter(preferred: str | None) -> Callable[..., Path]:
    """The adapter converter of the ``preferred`` backend, else of the first registered backend (name order) that has one.

    Any registered backend with a converter qualifies; one whose libraries do not import is skipped
    (and named in the error when none works).
    """
    names = [canonical_name(preferred)] if preferred else BackendRegistry.available()
    problems: list[str] = []
    for name in names:
        try:
            spec = BackendRegistry.spec(name)  # 'Unknown backend: <name>' for an unregistered --backend
            if not spec.has_converter:
                problems.append(f"{name}: provides no adapter converter")
                continue
            return spec.load_converter()
        except ImportError as exc:
            problems.append(f"{name}: {exc.name or exc} not installed")
    raise BackendNotFoundError("no backend package can convert adapters (" + "; ".join(problems) +
                               "); install one: pip install 'mindprint-trainer[torch]' or 'mindprint-trainer[mlx]'")


def cmd_convert_adapter(args: argparse.Namespace) -> int:
    from mindprint_interfaces.adapter_format import detect_layout

    src = Path(args.src)
    layout = detect_layout(src)
    convert = find_converter(args.backend)
    out = convert(src, Path(args.dst), to=args.to)
    console.print(f"converted {layout} adapter {src} -> {args.to} adapter {out}")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from .doctor import run_doctor

    return run_doctor(console, check_speed=not args.no_speed)


# --------------------------------------------------------------------------------------------
# train / demo (the curriculum pipeline)


def cmd_train(args: argparse.Namespace) -> int:
    from .curriculum_run import run_train

    return run_train(args)


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(args)


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "train": cmd_train,
    "sft": cmd_sft,
    "dpo": cmd_dpo,
    "orpo": cmd_orpo,
    "cpo": cmd_cpo,
    "kto": cmd_kto,
    "generate": cmd_generate,
    "eval": cmd_eval,
    "merge": cmd_merge,
    "convert-adapter": cmd_convert_adapter,
    "doctor": cmd_doctor,
    "demo": cmd_demo,
}
COMMANDS["export"] = cmd_export
COMMANDS["chat"] = cmd_chat


def dispatch(args: argparse.Namespace) -> int:
    return COMMANDS[args.command](args)
