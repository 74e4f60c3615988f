"""``mindprint train``: the curriculum pipeline (SFT -> evaluate -> the preference method per topic) with a run
directory.

Ctrl-C stops the run; the pipeline's checkpoint (written after every finished topic, and inside a topic
after every finished stage) stays in ``RUN_DIR/checkpoints`` and ``mindprint train --resume RUN_DIR``
continues there: inside the interrupted stage from its newest step checkpoint when ``save_steps`` is set.
"""

from __future__ import annotations

import argparse
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from rich.console import Console
from rich.table import Table

from mindprint_interfaces import Backend, ConfigError, DataValidationError
from mindprint_interfaces.data import (
    as_preference_pairs,
    as_sft_examples,
    load_preference_jsonl,
    load_sft_jsonl,
)

from .args_config import config_from_args
from .backend_setup import make_backend
from .bundled_model import resolve_model_path
from .config import TrainerConfig, load_config
from .dataset_input import pipeline_input
from .interrupt import StopRequest, graceful_sigint
from .progress import ProgressDisplay, steps_for
from .reporting import NoteConsole
from .run_output import attach_trackers, err_console, finish_run
from .rundir import CONFIG, RunDirectory, TopicRow, new_run_dir, preference_column

EXIT_INTERRUPTED = 130


@dataclass
class CurriculumFiles:
    sft: Path
    preferences: Path | None
    quiz: Path | None
    markers: Path | None


def curriculum_files(cfg: TrainerConfig) -> CurriculumFiles:
    sft = cfg.data.resolve(cfg.data.sft_file)
    if sft is None:
        raise ConfigError("data.sft_file must be set for `mindprint train`", key="data.sft_file")
    prefs = cfg.data.resolve(cfg.data.preference_file)
    quiz = cfg.data.resolve(cfg.data.quiz_file)
    markers = cfg.data.resolve(cfg.data.markers_file)
    if prefs is not None and not prefs.is_file() and cfg.data.preference_file == "preference_data.jsonl":
        prefs = None  # the default name is optional; an explicitly named file must exist (the loader says so)
    if markers is not None and not markers.is_file():
        if cfg.data.markers_file != "voice_markers.json":
            raise ConfigError(f"data.markers_file: {markers} not found", key="data.markers_file")
        markers = None
    return CurriculumFiles(sft, prefs, quiz, markers)


def pipeline_config_dict(cfg: TrainerConfig, run: RunDirectory, model_path: Path, files: CurriculumFiles) -> dict[str, Any]:
    """The pipeline's settings: the file's ``pipeline`` section and typed ``sft`` / ``dpo`` as they are, plus paths."""
    return {
        **cfg.pipeline.to_dict(),
        "backend_type": cfg.backend.type,
        "device": cfg.backend.device,
        "dtype": cfg.backend.dtype,
        "seed": cfg.backend.seed,
        "model_path": str(model_path),
        "markers_file": str(files.markers) if files.markers else None,
        "data_dir": cfg.data.dir,
        "output_dir": str(run.path),
        "checkpoint_dir": str(run.checkpoint_dir),
        "sft": cfg.sft,
        "dpo": cfg.dpo,
        "orpo": cfg.orpo,
        "cpo": cfg.cpo,
        "kto": cfg.kto,
    }


def _slug(text: str) -> str:
    from mindprint_pipeline.curriculum import id_dirname
    return id_dirname(text)  # injective: two topic ids never share an adapters/ link


def link_adapter(src: str | Path, dst: Path) -> Path:
    """``dst`` -> ``src`` (relative symlink; a copy where symlinks are not allowed)."""
    src_path = Path(src).resolve()
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.is_symlink() or dst.exists():
        if dst.is_symlink() or dst.is_file():
            dst.unlink()
        else:
            shutil.rmtree(dst)
    try:
        dst.symlink_to(os.path.relpath(src_path, dst.parent), target_is_directory=True)
    except OSError:
        shutil.copytree(src_path, dst)
    return dst


def topic_rows(topics: Sequence[Any], thresholds: Any = None, pairs: Mapping[str, int] | None = None) -> list[TopicRow]:
    """Summary rows; with the pipeline config (``thresholds``) a failed topic's row says why it failed."""
    from .topic_notes import failure_note

    rows = []
    method = str(getattr(thresholds, "preference_method", "dpo"))
    for t in topics:
        status = str(getattr(t, "status", "?"))
        done = status in ("passed", "failed")
        rows.append(TopicRow(topic=str(t.topic_id), status=status,
                             accuracy=float(t.accuracy) if done else None, voice=float(t.voice) if done else None,
                             attempts=int(t.attempts), seconds=float(t.time_seconds), dpo=bool(t.dpo_applied),
                             method=method,
                             note=failure_note(t, thresholds, has_pairs=bool((pairs or {}).get(str(t.topic_id), 1)))
                             if thresholds is not None else ""))
    return rows


def topics_table(rows: Sequence[TopicRow], title: str = "curriculum") -> Table:
    table = Table(title=title, title_justify="left")
    for col in ("topic", "status", "accuracy", "voice", preference_column(rows), "attempts", "time"):
        table.add_column(col)
    for r in rows:
        colour = "green" if r.status == "passed" else ("yellow" if r.status == "failed" else "dim")
        table.add_row(r.topic, f"[{colour}]{r.status}[/]", "-" if r.accuracy is None else f"{r.accuracy:.2f}",
                      "-" if r.voice is None else f"{r.voice:.2f}", "yes" if r.dpo else "no", str(r.attempts),
                      f"{r.seconds:.0f} s")
    notes = [f"{r.topic} failed: {r.note}" for r in rows if r.note]
    if notes:
        table.caption = "\n".join(notes)
        table.caption_justify = "left"
    return table


def progress_totals(cfg: TrainerConfig, files: CurriculumFiles, pipeline_cfg: Any,
                    inputs: tuple[Any, Any] | None = None) -> dict[tuple[str, str | None], int]:
    """Expected SFT/DPO steps per topic, for the progress bars' ETA (``inputs``: the pipeline's SFT and
    preference inputs when they are records rather than the files)."""
    sft_in, prefs_in = inputs or (files.sft, files.preferences)
    totals: dict[tuple[str, str | None], int] = {}
    counts: dict[str, int] = {}
    for ex in (as_sft_examples(sft_in) if isinstance(sft_in, list) else load_sft_jsonl(sft_in)):
        if ex.topic_id:
            counts[ex.topic_id] = counts.get(ex.topic_id, 0) + 1
    sft_cfg = pipeline_cfg.sft_config(seed=0)
    pref_cfg = pipeline_cfg.preference_config(seed=0)
    pref_stage = str(getattr(pipeline_cfg, "preference_method", "dpo"))
    pair_counts: dict[str, int] = {}
    if prefs_in:
        for pair in (as_preference_pairs(prefs_in) if isinstance(prefs_in, list) else load_preference_jsonl(prefs_in)):
            if pair.topic_id:
                pair_counts[pair.topic_id] = pair_counts.get(pair.topic_id, 0) + 1
    earlier = 0  # SFT records of the topics before this one (the pipeline replays up to sft_replay_per_topic)
    for topic, n in counts.items():
        replayed = min(earlier, pipeline_cfg.sft_replay_per_topic)
        earlier += n
        totals[("sft", topic)] = steps_for(n + replayed, sft_cfg.per_device_batch_size, sft_cfg.gradient_accumulation_steps,
                                           sft_cfg.num_epochs, sft_cfg.max_steps)
        totals[(pref_stage, topic)] = steps_for(pair_counts.get(topic, 1), pref_cfg.per_device_batch_size,
                                                pref_cfg.gradient_accumulation_steps, pref_cfg.num_epochs,
                                                pref_cfg.max_steps)
    return totals


@dataclass
class CurriculumOutcome:
    result: Any  # mindprint_pipeline PipelineResult
    rows: list[TopicRow]
    backend: Backend
    model_path: Path


def run_curriculum(cfg: TrainerConfig, run: RunDirectory, *, resume: bool = False, backend: Backend | None = None,
                   console: Console | NoteConsole | None = None, title: str = "mindprint train",
                   facts: Mapping[str, Any] | None = None, announce: str | None = None) -> CurriculumOutcome:
    """Run the pipeline into ``run``; on Ctrl-C write the partial summary, print the resume hint, re-raise.

    ``announce`` is printed once every input was validated, before any model work: a refused run prints only
    its error line (and leaves no run directory), an accepted one says where it writes from the start."""
    from mindprint_pipeline.config import PipelineConfig
    from mindprint_pipeline.pipeline import DPOPipeline

    console = console or err_console
    attach_trackers(run, cfg)
    files = curriculum_files(cfg)
    # Validate every data file before any model work (file:line errors, row N for datasets).
    def read(path: Path, kind: Literal["sft", "preference"]) -> str | list[dict[str, Any]]:
        return pipeline_input(path, kind, columns=cfg.data.columns, split=cfg.data.split, revision=cfg.data.revision)

    sft_in = read(files.sft, "sft")
    no_pairs: list[dict[str, Any]] = []  # an empty list = "no DPO" (None would mean data_dir's file)
    prefs_in = read(files.preferences, "preference") if files.preferences is not None else no_pairs
    quiz_in = read(files.quiz, "sft") if files.quiz is not None else None
    check_quiz(quiz_in)
    backend = backend or make_backend(cfg)
    model_path = resolve_model_path(cfg.model.path)
    pipeline_cfg = PipelineConfig.from_dict(pipeline_config_dict(cfg, run, model_path, files))
    display = ProgressDisplay(run)
    display.totals = progress_totals(cfg, files, pipeline_cfg, (sft_in, prefs_in))
    stop = StopRequest()
    pipeline = DPOPipeline(config=pipeline_cfg, backend=backend, callbacks=[display, stop])  # reads the markers
    curriculum = pipeline.load_data(sft_in, prefs_in, quiz_in)  # every data error (file:line), before any model work
    if announce is not None:
        console.print(announce)
    base_facts: dict[str, Any] = {"backend": backend.name, "device": backend.device_manager.device,
                                  "dtype": backend.device_manager.dtype, "model": cfg.model.path,
                                  "data": str(files.sft), **(facts or {})}
    def interrupted() -> KeyboardInterrupt:
        rows = topic_rows(list(display.topic_results.values()), pipeline_cfg, _pairs(pipeline))
        finish_run(run, f"{title} (interrupted)", topics=rows, facts=base_facts)
        console.print(f"[yellow]interrupted[/]: the checkpoint after the last finished topic (and stage) is in "
                      f"{run.checkpoint_dir}\nresume with: [bold]mindprint train --resume {run.path}[/]")
        return KeyboardInterrupt()

    try:
        with display, graceful_sigint(stop, announce=lambda msg: console.print(f"[yellow]{msg}[/]")):
            result = pipeline.train_curriculum(curriculum=curriculum, resume=resume)
    except KeyboardInterrupt:
        raise interrupted() from None
    if stop.requested and not result.completed:
        raise interrupted()
    rows = topic_rows(result.topics, pipeline_cfg, _pairs(pipeline))
    for t in result.topics:
        if t.adapter_path:
            link_adapter(t.adapter_path, run.adapters_dir / _slug(t.topic_id))
    final_facts: dict[str, Any] = {**base_facts, "passed": f"{len(result.passed_topics)}/{result.total_topics}",
                                   "training time": f"{result.total_time_seconds:.0f} s"}
    if result.final_adapter_path:
        link_adapter(result.final_adapter_path, run.adapters_dir / "final")
        final_facts["final adapter"] = f"adapters/final (on {result.final_model_path})"
    elif result.final_model_path:
        final_facts["final model (merged)"] = result.final_model_path
    method = pipeline_cfg.preference_method
    pref_limit = pipeline_cfg.preference_config(seed=0).max_length
    # the attempts keep the preference stage's cuts under dpo_* whatever the method (older checkpoints too)
    for stage, label, source, limit in (("sft", "sft", files.sft, cfg.sft.max_length),
                                        ("dpo", method, files.preferences, pref_limit)):
        note = _curriculum_truncation(result.topics, stage, limit, str(source))
        if note is not None:
            final_facts[f"{label} truncation"] = note
            console.print(f"[yellow]warning[/]: {note}")
    from .plots import pipeline_scores, write_curriculum_plot

    write_curriculum_plot(pipeline_scores(result.topics), run.path, before="after SFT", after="final")
    finish_run(run, title, topics=rows, facts=final_facts)
    return CurriculumOutcome(result, rows, backend, model_path)


def _pairs(pipeline: Any) -> dict[str, int]:
    """Preference pairs per topic of the pipeline's curriculum (empty before the data is loaded)."""
    curriculum = getattr(pipeline, "curriculum", None)
    return {t.id: len(t.preferences) for t in curriculum.topics} if curriculum is not None else {}


def check_quiz(quiz_in: str | list[dict[str, Any]] | None) -> None:
    """The quiz's key facts (``must_include`` / ``must_not_include``) are valid: file:line errors before model work."""
    from mindprint_interfaces.data import as_quiz_examples, load_quiz_jsonl

    if isinstance(quiz_in, str):
        load_quiz_jsonl(quiz_in)
    elif quiz_in:
        as_quiz_examples(quiz_in, "quiz data")


def _curriculum_truncation(topics: Sequence[Any], stage: str, max_length: int, source: str) -> str | None:
    """Over all topics of one file: how many records were cut, and the longest, named by ``file:line`` (``row N``
    for a dataset) as the single-run note names it (the pipeline maps each topic's record to its input line)."""
    truncated = dropped = 0
    longest_chars, longest_line = 0.0, 0.0
    for topic in topics:
        for attempt in topic.history[-1:]:
            m = attempt.metrics
            truncated += int(m.get(f"{stage}_truncated", 0))
            dropped += int(m.get(f"{stage}_dropped", 0))
            chars = m.get(f"{stage}_truncated_longest_chars", 0.0)
            if chars > longest_chars:
                longest_chars, longest_line = chars, m.get(f"{stage}_truncated_longest_line", 0.0)
    from .truncation import truncation_note

    return truncation_note({"truncated": truncated, "dropped": dropped, "truncated_longest_line": int(longest_line),
                            "truncated_longest_chars": int(longest_chars)}, max_length, source)


def run_train(args: argparse.Namespace) -> int:
    if args.resume:
        run_path = Path(args.resume)
        from .cli_inputs import check_resume_kind

        check_resume_kind(run_path, "train")
        if not (run_path / CONFIG).is_file():
            raise ConfigError(f"--resume: {run_path} is not a mindprint run directory (no {CONFIG})", key="resume")
        extra: dict[str, Any] = {"output_dir": str(run_path.parent)}
        cfg = load_config(run_path / CONFIG, backend=args.backend, device=args.device, dtype=args.dtype,
                          sets=args.set or (), extra=extra)
        run = RunDirectory(run_path, "train")
        from mindprint_pipeline.checkpoint import load_state

        state = load_state(run.checkpoint_dir)
        current = state.current.get("topic") if state is not None and state.current else None
        run.keep_metrics_of(set(state.topics) if state is not None else set(), current)  # no row logged twice
    else:
        cfg = config_from_args(args)
        run = RunDirectory(new_run_dir(cfg.output_dir, "train"), "train")
        run.write_config(cfg.to_yaml())
    # said before any model work (as sft/dpo do): a curriculum runs for minutes to hours, and its checkpoints,
    # metrics and adapters land there from the first topic on
    announce = f"{'continuing the run in' if args.resume else 'writing to'} {run.path}"
    try:
        outcome = run_curriculum(cfg, run, resume=bool(args.resume), announce=announce)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except (ConfigError, DataValidationError):
        if not args.resume:
            run.discard_if_unused()  # refused before any work: no empty run directory is left behind
        raise
    out = Console()  # the final summary: stdout, shown also with --quiet
    out.print(topics_table(outcome.rows))
    res = outcome.result
    out.print(f"{len(res.passed_topics)}/{res.total_topics} topics passed; summary: {run.path / 'summary.md'}")
    return 0
