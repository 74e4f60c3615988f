"""Plots people read at a glance (#21): checked on the matplotlib objects, not on pixels."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from mindprint_trainer.plots import (
    BOUNDARY_GID,
    RETRY_GID,
    TopicScores,
    curriculum_figure,
    loss_figure,
    rewards_figure,
    write_curriculum_plot,
)
from mindprint_trainer.rundir import RunDirectory

TOPICS = ("u1/c/alpha", "u1/c/beta", "u2/c/gamma")


def curriculum_rows() -> list[dict[str, Any]]:
    """Three topics, 4 SFT + 3 DPO steps each; DPO rewards restart at 0 at every topic (as they do)."""
    rows: list[dict[str, Any]] = []
    for topic in TOPICS:
        for step in range(1, 5):
            rows.append({"stage": "sft", "topic": topic, "step": step, "loss": 3.0 / step})
        for step in range(1, 4):
            rows.append({"stage": "dpo", "topic": topic, "step": step, "loss": 0.69 - 0.1 * step,
                         "rewards/margins": 0.2 * (step - 1), "rewards/chosen": 0.1 * (step - 1),
                         "rewards/rejected": -0.1 * (step - 1), "rewards/accuracies": min(1.0, 0.5 * step)})
    return rows


def boundaries(ax: Axes) -> list[float]:
    return [float(line.get_xdata()[0]) for line in ax.get_lines() if line.get_gid() == BOUNDARY_GID]


def labels(ax: Axes) -> list[str]:
    return [t.get_text() for t in ax.texts]


def legend_outside(fig: Figure, ax: Axes) -> bool:
    fig.canvas.draw()
    legend = ax.get_legend()
    assert legend is not None
    return bool(legend.get_window_extent().x0 >= ax.get_window_extent().x1)


def test_rewards_plot_marks_topics_and_puts_accuracies_on_their_own_axis() -> None:
    fig = rewards_figure(curriculum_rows())
    assert fig is not None
    rewards_ax, acc_ax = fig.axes
    assert rewards_ax.get_ylabel() and acc_ax.get_ylabel() == "reward accuracy"
    assert acc_ax.get_xlabel() == "DPO step (across the run)"
    # 3 topics of 3 steps: boundaries before steps 4 and 7, on both axes; every topic named once
    assert boundaries(rewards_ax) == [3.5, 6.5] and boundaries(acc_ax) == [3.5, 6.5]
    assert labels(rewards_ax) == ["alpha", "beta", "gamma"]
    # accuracies only on their axis (0..1), rewards only on theirs
    reward_labels = {line.get_label() for line in rewards_ax.get_lines() if line.get_gid() != BOUNDARY_GID}
    assert {"margins", "chosen", "rejected"} <= reward_labels and "accuracies" not in reward_labels
    acc_values = [y for line in acc_ax.get_lines() if line.get_gid() != BOUNDARY_GID for y in line.get_ydata()]
    assert acc_values and all(0.0 <= y <= 1.0 for y in acc_values)
    assert acc_ax.get_ylim() == (-0.05, 1.05)
    # the reset at a topic start is not drawn as a drop: one line per topic segment per key
    margins = [line for line in rewards_ax.get_lines() if line.get_color() == "C0" and line.get_gid() != BOUNDARY_GID]
    assert [list(line.get_xdata()) for line in margins] == [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
    assert legend_outside(fig, rewards_ax) and legend_outside(fig, acc_ax)


def test_loss_plot_labels_and_boundaries_per_stage() -> None:
    fig = loss_figure(curriculum_rows())
    assert fig is not None
    sft_ax, dpo_ax = fig.axes
    for ax, stage, per_topic in ((sft_ax, "SFT", 4), (dpo_ax, "DPO", 3)):
        assert ax.get_xlabel() == f"{stage} step (across the run)" and ax.get_ylabel() == "loss"
        assert boundaries(ax) == [per_topic + 0.5, 2 * per_topic + 0.5]
        assert labels(ax) == ["alpha", "beta", "gamma"]
        assert legend_outside(fig, ax)


def test_a_retried_topic_is_not_joined_across_attempts() -> None:
    rows = [{"stage": "sft", "topic": t, "step": s, "loss": 1.0 / s}
            for t, s in (("u/c/a", 1), ("u/c/a", 2), ("u/c/a", 1), ("u/c/a", 2), ("u/c/b", 1))]
    fig = loss_figure(rows)
    assert fig is not None
    (ax,) = fig.axes
    assert boundaries(ax) == [4.5] and labels(ax) == ["a", "b"]
    assert [line.get_xdata()[0] for line in ax.get_lines() if line.get_gid() == RETRY_GID] == [2.5]
    curves = [list(line.get_xdata()) for line in ax.get_lines() if line.get_gid() is None]
    assert curves == [[1, 2], [3, 4], [5]]


def test_single_stage_run_has_no_boundaries() -> None:
    fig = loss_figure([{"stage": "sft", "topic": None, "step": s, "loss": 1.0 / s} for s in (1, 2, 3)])
    assert fig is not None
    (ax,) = fig.axes
    assert boundaries(ax) == [] and labels(ax) == []
    assert ax.get_ylabel() == "loss"


def test_curriculum_picture_before_vs_after_in_summary(tmp_path: Path) -> None:
    scores = [TopicScores("u1/c/alpha", 0.2, 0.0, 0.6, 0.9), TopicScores("u2/c/beta", 0.3, 0.1, 0.5, 0.8)]
    fig = curriculum_figure(scores, before="base model", after="after training")
    acc_ax, voice_ax = fig.axes
    assert acc_ax.get_ylabel() == "accuracy (ROUGE-L F1)" and voice_ax.get_ylabel() == "voice (marker score)"
    assert [t.get_text() for t in acc_ax.get_xticklabels()] == ["alpha", "beta"]
    heights = [round(p.get_height(), 3) for p in acc_ax.patches]
    assert heights == [0.2, 0.3, 0.6, 0.5]  # before bars, then after bars
    assert [round(p.get_height(), 3) for p in voice_ax.patches] == [0.0, 0.1, 0.9, 0.8]
    assert [t.get_text() for t in voice_ax.get_legend().get_texts()] == ["base model", "after training"]
    assert legend_outside(fig, voice_ax)

    run = RunDirectory(tmp_path / "run")
    assert write_curriculum_plot(scores, run.path) == run.path / "curriculum.png"
    assert write_curriculum_plot([], run.path / "none") is None
    summary = run.write_summary(title="mindprint demo").read_text()
    assert "![curriculum.png](curriculum.png)" in summary
    assert (run.path / "curriculum.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_demo_scores_the_quiz_answers_per_topic_as_the_evaluator_does() -> None:
    from mindprint_interfaces.data import as_quiz_examples
    from mindprint_pipeline.evaluation import DefaultEvaluator
    from mindprint_trainer.demo import before_after_scores, demo_data_dir, topic_scores

    quiz = as_quiz_examples([
        {"topic_id": "u/c/a", "question": "q1", "answer": "The sun is a star.", "must_include": ["star"]},
        {"topic_id": "u/c/a", "question": "q2", "answer": "Water boils."},
        {"topic_id": "u/c/b", "question": "q3", "answer": "Plants make sugar.", "must_not_include": ["rocks"]}])
    before = ["The sun is a star.", "No idea.", "Plants make rocks and sugar."]
    after = ["Great question, friend! The sun is a star. Keep exploring!", "Water boils.", "Plants make sugar."]
    scorer = DefaultEvaluator.from_files(demo_data_dir() / "voice_markers.json")  # as the demo scores its quiz
    rows = [{"scores_before": scorer.score_answer(ex, x), "scores_after": scorer.score_answer(ex, y)}
            for ex, x, y in zip(quiz, before, after, strict=True)]
    a, b = topic_scores(before_after_scores(quiz, rows))
    assert (a.topic, b.topic) == ("u/c/a", "u/c/b")
    assert a.before_accuracy == 0.5 and a.after_accuracy > 0.5
    assert b.before_accuracy == 0.0  # a wrong fact scores 0 although most words overlap
    assert b.after_accuracy == 1.0
    assert a.before_voice == 0.0 and a.after_voice > 0.0  # the bundled markers find the tutor's voice


def method_rows(method: str, own: dict[str, float], *, sft: bool = True, accuracies: bool = True) -> list[dict[str, Any]]:
    """Two topics; the preference stage tagged with its method, logging TRL's metric names for it."""
    rows: list[dict[str, Any]] = []
    for topic in TOPICS[:2]:
        if sft:
            rows += [{"stage": "sft", "topic": topic, "step": s, "loss": 3.0 / s} for s in (1, 2)]
        for step in (1, 2, 3):
            row = {"stage": method, "topic": topic, "step": step, "loss": 1.0 / step, "rewards/margins": 0.1 * step,
                   "rewards/chosen": -1.0, "rewards/rejected": -1.0 - 0.1 * step, **own}
            if accuracies:
                row["rewards/accuracies"] = 1.0
            rows.append(row)
    return rows


def curve_labels(ax: Axes) -> set[str]:
    return {str(line.get_label()) for line in ax.get_lines() if line.get_gid() is None and
            not str(line.get_label()).startswith("_")}


def test_orpo_stage_is_plotted_under_its_name_with_its_own_metrics() -> None:
    rows = method_rows("orpo", {"log_odds_ratio": -0.6, "log_odds_chosen": 0.2, "nll_loss": 2.0})
    loss = loss_figure(rows)
    assert loss is not None
    assert [ax.get_title().split(" (")[0] for ax in loss.axes] == ["SFT loss", "ORPO loss"]
    fig = rewards_figure(rows)
    assert fig is not None
    rewards_ax, acc_ax, own_ax = fig.axes
    assert own_ax.get_xlabel() == "ORPO step (across the run)" and own_ax.get_ylabel() == "ORPO metrics"
    assert curve_labels(own_ax) == {"log_odds_ratio", "log_odds_chosen", "nll_loss"}
    assert boundaries(own_ax) == [3.5] and boundaries(rewards_ax) == [3.5]
    assert "restart near 0" not in rewards_ax.get_title()  # ORPO's rewards have no reference model
    assert legend_outside(fig, own_ax)


def test_kto_without_accuracies_gets_rewards_and_kl_panels_only() -> None:
    rows = method_rows("kto", {"kl": 0.05}, sft=True, accuracies=False)
    fig = rewards_figure(rows)
    assert fig is not None
    rewards_ax, own_ax = fig.axes
    assert curve_labels(own_ax) == {"kl"} and own_ax.get_xlabel() == "KTO step (across the run)"
    assert "restart near 0" in rewards_ax.get_title()


def test_a_single_preference_command_run_has_its_loss_plot() -> None:
    """``mindprint orpo`` logs stage "orpo" and no SFT: its loss is drawn (it was dropped when only sft/dpo were)."""
    fig = loss_figure([{"stage": "orpo", "topic": None, "step": s, "loss": 1.0 / s} for s in (1, 2, 3)])
    assert fig is not None
    (ax,) = fig.axes
    assert ax.get_xlabel() == "ORPO step (across the run)"


def test_a_resumed_run_with_older_dpo_tagged_rows_still_plots() -> None:
    """Rows written before the stage carried its method's name (tagged "dpo") and rows after ("orpo")."""
    rows = [r for r in method_rows("dpo", {}) if r["topic"] == TOPICS[0]]
    rows += [r for r in method_rows("orpo", {"log_odds_ratio": -0.6}) if r["topic"] == TOPICS[1]]
    loss = loss_figure(rows)
    assert loss is not None and [ax.get_xlabel().split()[0] for ax in loss.axes] == ["SFT", "DPO", "ORPO"]
    fig = rewards_figure(rows)
    assert fig is not None
    assert fig.axes[-1].get_xlabel() == "DPO/ORPO step (across the run)"
    assert boundaries(fig.axes[0]) == [3.5]  # one x axis over both stages' steps, the topic start marked
