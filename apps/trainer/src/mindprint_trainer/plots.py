"""The run directory's pictures (matplotlib, no pyplot state): read at a glance.

* ``loss.png`` — training loss per stage (``sft``, then the preference stage under its method's name: ``dpo``,
  ``orpo``, ``cpo``, ``kto``); in a curriculum every topic start is a dotted vertical line labelled with the
  topic (a loss that jumps at a topic start is a new topic, not a divergence);
* ``rewards.png`` — the preference stage's rewards (margins, chosen, rejected) on one axis,
  ``rewards/accuracies`` on their own axis below (0..1) and, when the method logs them, its own metrics on a
  third (ORPO's ``log_odds_ratio`` / ``log_odds_chosen`` / ``nll_loss``, CPO's ``nll_loss``, KTO's ``kl``), all
  with the topic boundaries: DPO/KTO rewards restart near 0 at every topic because the reference is the model
  the topic started from;
* ``curriculum.png`` — accuracy and voice per topic, before vs after (``mindprint train``: after SFT vs final;
  ``mindprint demo``: the base model vs the trained model on the quiz).

Every axis has its labels; legends sit outside the data area (right of the axes).

The figure builders return the :class:`~matplotlib.figure.Figure`, so tests check its structure.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

LOSS_PNG = "loss.png"
REWARDS_PNG = "rewards.png"
CURRICULUM_PNG = "curriculum.png"
BOUNDARY_GID = "topic-boundary"
RETRY_GID = "retry-boundary"
REWARD_KEYS = ("rewards/margins", "rewards/chosen", "rewards/rejected")
ACCURACY_KEY = "rewards/accuracies"
METHOD_KEYS = ("log_odds_ratio", "log_odds_chosen", "nll_loss", "kl")  # TRL's names (ORPO, CPO, KTO)
SFT_STAGE = "sft"
DPI = 100


@dataclass
class Segment:
    """Consecutive steps of one stage on one topic, on the stage's run-global x axis (1, 2, ...)."""

    topic: str
    start: int
    rows: list[tuple[int, Mapping[str, Any]]]
    retry: bool = False  # the same topic again (its step counter restarted): another attempt

    def points(self, key: str) -> tuple[list[int], list[float]]:
        xs, ys = [], []
        for x, row in self.rows:
            value = row.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                xs.append(x)
                ys.append(float(value))
        return xs, ys


def stages(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The stages the rows have: ``sft`` first, then the others (a preference stage is named after its method)
    in the order they first appear."""
    seen = list(dict.fromkeys(str(r["stage"]) for r in rows if r.get("stage")))
    return sorted(seen, key=lambda s: s != SFT_STAGE)


def preference_stages(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    return [s for s in stages(rows) if s != SFT_STAGE]


def segments(rows: Sequence[Mapping[str, Any]], stage: str | Sequence[str]) -> list[Segment]:
    """The rows of ``stage`` (or of any of several stages) as segments, one per topic attempt."""
    wanted = {stage} if isinstance(stage, str) else set(stage)
    out: list[Segment] = []
    x = 0
    for row in rows:
        if row.get("stage") not in wanted:
            continue
        x += 1
        topic = str(row.get("topic") or "")
        step = row.get("step")
        last = out[-1].rows[-1][1].get("step") if out else None
        restarted = isinstance(step, int) and isinstance(last, int) and step <= last
        if not out or out[-1].topic != topic or restarted:
            out.append(Segment(topic, x, [], retry=bool(out) and out[-1].topic == topic))
        out[-1].rows.append((x, row))
    return out


def _short(topic: str) -> str:
    return topic.rsplit("/", 1)[-1]


def mark_topics(ax: Axes, segs: Sequence[Segment], *, labels: bool = True) -> None:
    """A dotted vertical line at every topic start after the first, a faint dashed one where a topic is retried;
    the topic's name above each topic's first segment."""
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if not any(s.topic for s in segs):
        return
    for seg in segs[1:]:
        if seg.retry:
            ax.axvline(seg.start - 0.5, color="0.75", linestyle="--", linewidth=0.8).set_gid(RETRY_GID)
        else:
            ax.axvline(seg.start - 0.5, color="0.45", linestyle=":", linewidth=1).set_gid(BOUNDARY_GID)
    if labels:
        for seg in (s for s in segs if not s.retry):
            ax.text(seg.start - 0.5, 1.01, _short(seg.topic), transform=ax.get_xaxis_transform(), fontsize=7,
                    ha="left", va="bottom", color="0.3", clip_on=False)


def legend_outside(ax: Axes) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, fontsize=7, frameon=False)


def _plot_key(ax: Axes, segs: Sequence[Segment], key: str, label: str, colour: str) -> bool:
    """One line per segment (not joined across topics), one legend entry."""
    drawn = False
    for seg in segs:
        xs, ys = seg.points(key)
        if xs:
            ax.plot(xs, ys, marker=".", markersize=3, color=colour, label=None if drawn else label)
            drawn = True
    return drawn


def loss_figure(rows: Sequence[Mapping[str, Any]]) -> Figure | None:
    shown = stages(rows)
    if not shown:
        return None
    fig = Figure(figsize=(6.5 * len(shown), 4))
    axes = fig.subplots(1, len(shown), squeeze=False)[0]
    for ax, stage in zip(axes, shown):
        segs = segments(rows, stage)
        _plot_key(ax, segs, "loss", f"{stage.upper()} loss", "C0")
        mark_topics(ax, segs)
        ax.set_title(f"{stage.upper()} loss" + (" (dotted: a new topic starts)" if len(segs) > 1 else ""),
                     fontsize=9, pad=14)
        ax.set_xlabel(f"{stage.upper()} step (across the run)")
        ax.set_ylabel("loss")
        ax.grid(alpha=0.3)
        legend_outside(ax)
    fig.tight_layout()
    return fig


def rewards_figure(rows: Sequence[Mapping[str, Any]]) -> Figure | None:
    """The preference stage's rewards, accuracies and its method's own metrics: one panel each, when logged
    (KTO logs no accuracies; DPO no method metrics)."""
    names = preference_stages(rows)
    pref = [r for r in rows if r.get("stage") in names]
    keys = [k for k in REWARD_KEYS if any(k in r for r in pref)]
    has_acc = any(ACCURACY_KEY in r for r in pref)
    method_keys = [k for k in METHOD_KEYS if any(k in r for r in pref)]
    if not keys and not has_acc:
        return None
    label = "/".join(n.upper() for n in names)
    segs = segments(rows, names)
    panels = [p for p, shown in (("rewards", bool(keys)), ("accuracy", has_acc), ("method", bool(method_keys)))
              if shown]
    ratios = {"rewards": 2.0, "accuracy": 1.0, "method": 1.4}
    fig = Figure(figsize=(8, 1.5 + 1.4 * sum(ratios[p] for p in panels)))
    axes = list(fig.subplots(len(panels), 1, sharex=True, squeeze=False,
                             gridspec_kw={"height_ratios": [ratios[p] for p in panels]})[:, 0])
    for panel, ax in zip(panels, axes):
        if panel == "rewards":
            for i, key in enumerate(keys):
                _plot_key(ax, segs, key, key.split("/", 1)[1], f"C{i}")
            ax.axhline(0.0, color="0.6", linewidth=0.8)
            ax.set_ylabel("reward (beta x log-prob term)")
        elif panel == "accuracy":
            _plot_key(ax, segs, ACCURACY_KEY, "accuracies", "C3")
            ax.set_ylim(-0.05, 1.05)
            ax.set_ylabel("reward accuracy")
        else:
            for i, key in enumerate(method_keys):
                _plot_key(ax, segs, key, key, f"C{i + 4}")
            ax.set_ylabel(f"{label} metrics")
        mark_topics(ax, segs, labels=ax is axes[0])
        ax.grid(alpha=0.3)
    restart = any(n in ("dpo", "kto") for n in names)  # rewards relative to the topic's own reference
    axes[0].set_title(f"{label} rewards" + (" (each topic starts from its own reference, so rewards restart near 0)"
                                            if restart else ""), fontsize=9, pad=14)
    axes[-1].set_xlabel(f"{label} step (across the run)")
    for ax in axes:
        legend_outside(ax)
    fig.tight_layout()
    return fig


@dataclass
class TopicScores:
    topic: str
    before_accuracy: float
    before_voice: float
    after_accuracy: float
    after_voice: float


def curriculum_figure(scores: Sequence[TopicScores], *, before: str = "after SFT", after: str = "final") -> Figure:
    fig = Figure(figsize=(max(6.5, 1.6 * len(scores) + 3), 3.8))
    axes = fig.subplots(1, 2)
    width = 0.38
    xs = list(range(len(scores)))
    for ax, what, label in ((axes[0], "accuracy", "accuracy (ROUGE-L F1)"), (axes[1], "voice", "voice (marker score)")):
        b = [getattr(s, f"before_{what}") for s in scores]
        a = [getattr(s, f"after_{what}") for s in scores]
        ax.bar([x - width / 2 for x in xs], b, width, color="0.75", label=before)
        ax.bar([x + width / 2 for x in xs], a, width, color="C2", label=after)
        ax.set_xticks(xs, [_short(s.topic) for s in scores], rotation=20, ha="right", fontsize=8)
        ax.set_ylim(0, 1.05)
        ax.set_ylabel(label)
        ax.set_xlabel("topic (curriculum order)")
        ax.set_title(what, fontsize=9)
        ax.grid(alpha=0.3, axis="y")
    legend_outside(axes[1])
    fig.tight_layout()
    return fig


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=DPI, bbox_inches="tight")  # "tight": the legends outside the axes are kept
    return path


def write_plots(rows: Sequence[Mapping[str, Any]], out_dir: Path) -> list[Path]:
    """loss.png (when any step has a loss) and rewards.png (when the preference stage logged rewards)."""
    written: list[Path] = []
    for name, fig in ((LOSS_PNG, loss_figure(rows)), (REWARDS_PNG, rewards_figure(rows))):
        if fig is not None:
            written.append(_save(fig, out_dir / name))
    return written


def write_curriculum_plot(scores: Sequence[TopicScores], out_dir: Path, *, before: str = "after SFT",
                          after: str = "final") -> Path | None:
    if not scores:
        return None
    return _save(curriculum_figure(scores, before=before, after=after), out_dir / CURRICULUM_PNG)


def pipeline_scores(topics: Sequence[Any]) -> list[TopicScores]:
    """Per finished topic of a pipeline result: the evaluation after SFT and the final one (after the
    preference stage when it ran) of the attempt the curriculum kept."""
    out = []
    for t in topics:
        if getattr(t, "status", "pending") == "pending" or not t.history:
            continue
        kept = next((h for h in t.history if h.adapter_path == t.adapter_path), t.history[-1])
        out.append(TopicScores(str(t.topic_id), float(kept.accuracy_after_sft), float(kept.voice_after_sft),
                               float(kept.accuracy), float(kept.voice)))
    return out
