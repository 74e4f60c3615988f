"""Turn the per-job results into comparisons, the results JSON and the markdown table."""

from __future__ import annotations

import math
import statistics
from typing import Any

from .flops import GOALS
from .jobs import COMPARISONS, JOBS, MEMORY_CHECKS, VARIANTS, Comparison
from .measure import timed_steps


def _num(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and math.isfinite(float(x)) else None


def _div(a: Any, b: Any) -> float | None:
    a, b = _num(a), _num(b)
    return a / b if a is not None and b not in (None, 0.0) else None


def _eval_key(task: str) -> str:
    return "loss" if task == "sft" else "dpo_loss"


def paired_step_ratio(mp: dict[str, Any], peer: dict[str, Any]) -> float | None:
    """Median over steps of peer step time / mindprint step time, step i against step i of the same turn
    sequence (interleaved runs only: there step i of both sides ran back to back on the same machine)."""
    a, b = timed_steps(mp), timed_steps(peer)
    if len(a) != len(b) or not a:
        return None
    return statistics.median(q / p for p, q in zip(a, b) if p > 0)


def sides(c: Comparison, jobs: dict[str, dict[str, Any]],
          interleaved: dict[str, dict[str, dict[str, Any]]]) -> tuple[dict[str, Any] | None, dict[str, Any] | None, bool]:
    """The two results a comparison is judged on: its interleaved pair when it was measured that way."""
    pair = interleaved.get(c.key, {})
    if pair.get("mindprint", {}).get("ok") and pair.get("peer", {}).get("ok"):
        return pair["mindprint"], pair["peer"], True
    return jobs.get(c.mindprint), jobs.get(c.peer), False


def build_comparisons(jobs: dict[str, dict[str, Any]],
                      interleaved: dict[str, dict[str, dict[str, Any]]] | None = None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for c in COMPARISONS:
        mp, peer, paired = sides(c, jobs, interleaved or {})
        row: dict[str, Any] = {"key": c.key, "title": c.title, "mindprint": c.mindprint, "peer": c.peer,
                               "target": c.target, "measured": "interleaved" if paired else "separate runs",
                               "judged_on": "tokens/s" if c.per_token else "s/step"}
        problems = [f"{name}: {(j or {}).get('error') or (j or {}).get('skipped') or 'not run yet'}"
                    for name, j in ((c.mindprint, mp), (c.peer, peer)) if j is None or not j.get("ok")]
        if problems:
            row["status"] = "not measured"
            row["reason"] = "; ".join(problems)
            out.append(row)
            continue
        assert mp is not None and peer is not None
        key = _eval_key(mp["task"])
        step_ratio = _div(peer["sec_per_step_median"], mp["sec_per_step_median"])
        per_token = _div(mp["tokens_per_s"], peer["tokens_per_s"])
        row.update({
            # per_token rows (the length mix): a packed step and an unpacked peer's step carry different tokens,
            # so the judged ratio is tokens/s; the s/step ratio is kept as ratio_step
            "ratio": per_token if c.per_token else step_ratio,
            "ratio_step": step_ratio,
            "ratio_mean": _div(peer["sec_per_step"], mp["sec_per_step"]),
            "ratio_per_token": per_token,
            "ratio_amortised": _div(_div(mp["tokens_per_step"], mp["amortised_sec_per_step"]),
                                    _div(peer["tokens_per_step"], peer["amortised_sec_per_step"])) if c.per_token
            else _div(peer["amortised_sec_per_step"], mp["amortised_sec_per_step"]),
            "eval_after_mindprint": mp.get("eval_after", {}).get(key),
            "eval_after_peer": peer.get("eval_after", {}).get(key),
            "eval_before_mindprint": mp.get("eval_before"),
            "eval_before_peer": peer.get("eval_before"),
            "peak_rss_ratio": _div(mp["peak_rss_mb"], peer["peak_rss_mb"]),
            "rounds": len(mp.get("rounds") or [None]),
        })
        if paired and not c.per_token:  # step i of the two sides is not the same work in a per_token row
            row["ratio_paired_steps"] = paired_step_ratio(mp, peer)
        ratio = row["ratio"]
        if c.target is None:
            row["status"] = "info"
        else:
            row["status"] = "met" if ratio is not None and ratio >= c.target else "missed"
        out.append(row)
    return out


def build_memory_checks(jobs: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for backend, dpo, sft, target in MEMORY_CHECKS:
        d, s = jobs.get(dpo), jobs.get(sft)
        row: dict[str, Any] = {"backend": backend, "dpo": dpo, "sft": sft, "target": target}
        if not (d and s and d.get("ok") and s.get("ok")):
            row["status"] = "not measured"
            row["reason"] = "; ".join(f"{n}: {(j or {}).get('error') or (j or {}).get('skipped') or 'not run yet'}"
                                      for n, j in ((dpo, d), (sft, s)) if not (j and j.get("ok")))
            out.append(row)
            continue
        row.update({
            "dpo_peak_rss_mb": d["peak_rss_mb"], "sft_peak_rss_mb": s["peak_rss_mb"],
            "whole_process_ratio": _div(d["peak_rss_mb"], s["peak_rss_mb"]),
            "dpo_train_peak_rss_mb": d.get("train_peak_rss_mb"), "sft_train_peak_rss_mb": s.get("train_peak_rss_mb"),
            # judged on the training phase (peak RSS reset just before the trainer is built; it still contains
            # the loaded weights), so a load-time transient shared by both jobs cannot hide a difference
            "ratio": _div(d.get("train_peak_rss_mb"), s.get("train_peak_rss_mb")),
        })
        row["status"] = "met" if row["ratio"] is not None and row["ratio"] <= target else "missed"
        out.append(row)
    return out


def build_efficiency(jobs: dict[str, dict[str, Any]], throughput: dict[str, Any]) -> list[dict[str, Any]]:
    """Each job's achieved FLOP/s (its counted FLOPs per real token, ``tools.bench.flops.job_flops``, x its measured
    tokens/s) as a fraction of its backend's matmul throughput measured in the same run; "not measured" when the
    results lack the throughput (files from before #19.4) or the job its FLOP count."""
    out: list[dict[str, Any]] = []
    for jd in JOBS:
        j = jobs.get(jd.name)
        if j is None or not j.get("ok"):
            continue
        probe = throughput.get(jd.backend) or {}
        row: dict[str, Any] = {"job": jd.name, "backend": jd.backend, "goal": GOALS.get(jd.backend)}
        per_token = _num((j.get("flops") or {}).get("per_token"))
        achieved = per_token * j["tokens_per_s"] if per_token is not None and _num(j.get("tokens_per_s")) else None
        row["achieved_flops_per_s"] = achieved
        peak = _num(probe.get("flops_per_s")) if probe.get("ok") else None
        if achieved is None or peak is None:
            row["status"] = "not measured"
            row["reason"] = ("no matmul throughput in these results" + (f" ({probe.get('skipped') or probe.get('error')})"
                             if probe.get("skipped") or probe.get("error") else "")) if peak is None \
                else "the job has no FLOP count (an older result)"
            out.append(row)
            continue
        row.update({"throughput_flops_per_s": peak, "fraction": achieved / peak})
        row["status"] = "met" if row["goal"] is not None and row["fraction"] >= row["goal"] else "missed"
        out.append(row)
    return out


def _efficiency_lines(results: dict[str, Any]) -> list[str]:
    throughput: dict[str, Any] = results.get("throughput") or {}
    lines = [
        "",
        "## How close to the machine's matmul limit (#19 point 4)",
        "",
        ("Machine throughput: the model's own matmul shapes (each decoder-layer linear and the LM head, m = a typical "
         "step's tokens) timed in a process set up as the jobs are (same threads; MLX with mindprint-mlx's OpenBLAS), "
         "FLOP/s = 2mkn / median time, weighted by how often each shape runs in a forward pass. A job's FLOP/s = its "
         "counted FLOPs per real token x its tokens/s: 4 x the decoder linears' weights (forward + input gradient; "
         "the base is frozen) + 4 x hidden x vocab on the scored positions; no attention scores, LoRA matrices or "
         "reference pass (tools/bench/flops.py). Goal: >= 70 % (torch), >= 60 % (MLX)."),
        "",
    ]
    for backend in ("torch", "mlx"):
        t = throughput.get(backend)
        if not t:
            lines.append(f"- {backend}: matmul throughput not measured (not in these results)")
        elif not t.get("ok"):
            lines.append(f"- {backend}: matmul throughput not measured ({t.get('skipped') or t.get('error')})")
        else:
            shapes = ", ".join(f"{name} {_f(sh['flops_per_s'] / 1e9, 1)}" for name, sh in t["per_shape"].items())
            lines.append(f"- {backend}: **{_f(t['flops_per_s'] / 1e9, 1)} GFLOP/s** ({t.get('dtype')} on "
                         f"{t.get('device')}, m = {t['tokens']} tokens, median of {t['repeats']}; {t.get('library')}"
                         f"{'; BLAS: ' + t['blas'] if t.get('blas') else ''}; {t.get('date')}); per shape GFLOP/s: "
                         f"{shapes}")
    return lines


def _fraction_cell(row: dict[str, Any] | None) -> str:
    if row is None or row["status"] == "not measured":
        return "not measured"
    mark = " ✅" if row["status"] == "met" else ""
    return f"{_f(row['achieved_flops_per_s'] / 1e9, 1)} ({100 * row['fraction']:.0f} %{mark})"


def _f(x: Any, digits: int = 3) -> str:
    v = _num(x)
    return "—" if v is None else f"{v:.{digits}f}"


def _pair(a: Any, b: Any, digits: int = 3) -> str:
    return f"{_f(a, digits)} / {_f(b, digits)}"


def _load(values: Any) -> str:
    return _f(values[0], 1) if isinstance(values, list) and values else "—"


def _variant_lines(jobs: dict[str, dict[str, Any]]) -> list[str]:
    """What each memory/precision setting costs and saves against the fp32 SFT job (same data, same steps)."""
    lines = [
        "",
        "## Precision and memory settings (SFT, mindprint)",
        "",
        ("Each row: the fp32 SFT job's configuration with one setting changed; separate runs (not interleaved), so "
         "the s/step ratios carry the machine's drift between runs. Training peak RSS as in the memory table."),
        "",
        ("| job | setting | s/step median: setting / fp32 | time ratio | training peak RSS MB: setting / fp32 | "
         "memory ratio | fixed-set loss after N: setting / fp32 |"),
        "|---|---|---|---|---|---|---|",
    ]
    for base_name, name in VARIANTS:
        j, base = jobs.get(name), jobs.get(base_name)
        label = j.get("label", name) if j else name
        if not (j and base and j.get("ok") and base.get("ok")):
            why = "; ".join(f"{n}: {(x or {}).get('error') or (x or {}).get('skipped') or 'not run yet'}"
                            for n, x in ((name, j), (base_name, base)) if not (x and x.get("ok")))
            lines.append(f"| {name} | {label} | — | not measured | — | — | {why} |")
            continue
        lines.append(
            f"| {name} | {label} | {_pair(j['sec_per_step_median'], base['sec_per_step_median'])} | "
            f"{_f(_div(j['sec_per_step_median'], base['sec_per_step_median']), 2)}x | "
            f"{_pair(j.get('train_peak_rss_mb'), base.get('train_peak_rss_mb'), 0)} | "
            f"{_f(_div(j.get('train_peak_rss_mb'), base.get('train_peak_rss_mb')), 2)}x | "
            f"{_pair(j.get('eval_after', {}).get('loss'), base.get('eval_after', {}).get('loss'), 4)} |")
    return lines


def _length_mix_lines(meta: dict[str, Any]) -> list[str]:
    """How the length-mix rows (#19) are measured, with the mix's real token statistics."""
    stats = meta.get("data", {}).get("token_stats", {})
    seq, loss, rows = (stats.get(k) for k in ("sftmix_sequence_tokens", "sftmix_loss_tokens", "sftmix_packed_rows"))
    if not (seq and loss and rows):
        return []
    return ["", (
        f"Length mix (the `sftmix` rows, #19): {seq['n']} SFT records (`tools/bench/data.py: sft_mix_records`) whose "
        f"completion lengths follow a log-normal clipped to 16-940 tokens (completion + end-of-turn tokens: "
        f"{loss['min']}-{loss['max']}, median {loss['median']}, mean {loss['mean']}; whole sequences {seq['min']}-"
        f"{seq['max']}, median {seq['median']}), max length {rows['max_length']}. Packed "
        f"(TRL's bfd bins, the same on every packed side) they make {rows['rows']} rows of mean "
        f"{rows['row_tokens']['mean']} tokens ({rows['sequences_per_row']} sequences per row, fill {rows['fill']}). "
        "A packed step is the batch size in rows: mindprint runs the rows through TRL's padding-free collator "
        "(torch) or one block-diagonal-masked sequence per row (MLX); TRL packed gets the unpacked examples with "
        "`packing=True` (its own bfd packing and padding-free collator). The unpacked peers — TRL "
        "`padding_free=True` without packing (a batch flattened into one row) and mlx-lm (which cannot pack; "
        "it pads each length-sorted batch to a multiple of 32) — get batch x sequences per row sequences per step "
        "(rounded; in each job's notes), the same real tokens per step on average. Their steps still carry "
        "different token counts, so these rows are judged on tokens/s: real tokens only, counted per step from "
        "each side's batches (mindprint: the trainers' `num_tokens`; TRL: its collator's attention mask, or the "
        "flattened row's length when padding-free; mlx-lm: the batch's sequence lengths), summed over the timed "
        "steps and divided by their time; the amortised ratio is per token too.")]


def render_markdown(results: dict[str, Any]) -> str:
    meta = results["meta"]
    jobs: dict[str, dict[str, Any]] = results["jobs"]
    lines = [
        "# mindprint benchmarks",
        "",
        ("Regenerated by `uv run --group bench python -m tools.bench` (do not edit by hand). "
        "Raw numbers: [results.json](results.json)."),
        "",
        (f"- model: `{meta['model']}`; LoRA r={meta['lora_r']} alpha={meta['lora_alpha']} dropout 0 on "
        f"q/k/v/o_proj; {meta.get('dtype', 'float32')} on {meta.get('device', 'cpu')}"
        f"{' (--quick: the SFT and DPO comparisons only)' if meta.get('quick') else ''}; gradient checkpointing off; "
        "no eval, no checkpoint saving during training"),
        (f"- batch {meta['batch_size']} (SFT sequences / DPO pairs), max length {meta['max_length']}, "
        f"{meta['warmup']} warm-up + {meta['steps']} timed steps, constant LR (SFT {meta['lr_sft']}, DPO "
        f"{meta['lr_dpo']}), beta {meta['beta']}, no gradient clipping, AdamW (wd 0, bias correction), seed {meta['seed']}"),
        (f"- {meta['threads']} threads per job (torch.set_num_threads + OMP/OpenBLAS env); each job in its own process"
         if meta.get("threads") else "- no thread set-up (accelerator run); each job in its own process"),
        (f"- {meta.get('rounds', 1)} rounds, the job order reversed every other round; each job's timed steps "
         "pooled over the rounds" if meta.get("rounds", 1) > 1 else
         "- 1 round per job unless a row says otherwise (jobs in the listed order)"),
        ("- comparisons marked *interleaved*: the mindprint job and its peer ran at the same time, taking turns step "
         "by step (`--interleave`, tools/bench/baton.py), so both saw the same machine speed and never competed "
         "for the cores; time spent waiting for the turn is excluded; who starts alternates between rounds"
         if results.get("interleaved") else "- every job ran alone"),
        f"- machine: {meta['machine']}; load average at start {meta['loadavg_start']}, at end {meta['loadavg_end']}",
        f"- commit `{meta['git_commit']}`, {meta['date']}",
        *(f"- merged from a later run: commit `{m.get('git_commit')}`, {m.get('date')}, jobs "
          f"{', '.join(m.get('jobs_run_this_time') or [])}"
          + (f" ({m['machine']}; load average {m.get('loadavg_start')} -> {m.get('loadavg_end')})"
             if m.get("machine") else "")
          + (f"; {m['warmup']} warm-up + {m['steps']} timed steps"
             if m.get("steps") is not None and (m.get("steps"), m.get("warmup")) != (meta["steps"], meta["warmup"])
             else "") for m in meta.get("merged_runs", [])),
        "",
        "## Speed",
        "",
        ("ratio = peer seconds per step / mindprint seconds per step (median of the timed steps; the mean-based "
        "ratio is in results.json); higher is better for mindprint. per-token ratio = mindprint tokens/s / peer "
        "tokens/s (real, non-padding tokens). amortised ratio includes the one-off costs (set-up, reference "
        "precompute, compilation, first-step allocations) spread over a 100-step run."),
        "",
        ("| comparison | mindprint | peer | measured | median s/step mp / peer | **ratio** | target | per-token ratio | "
        "amortised ratio (100 steps) | one-off s mp / peer | peak RSS MB mp / peer | fixed-set loss after N: mp / peer |"),
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    interleaved = results.get("interleaved", {})
    for row in results["comparisons"]:
        pair = interleaved.get(row["key"], {}) if row.get("measured") == "interleaved" else {}
        mp = pair.get("mindprint") or jobs.get(row["mindprint"], {})
        peer = pair.get("peer") or jobs.get(row["peer"], {})
        target = "—" if row["target"] is None else f">= {row['target']:.1f}x"
        if row["status"] == "not measured":
            lines.append(f"| {row['title']} | {mp.get('label', row['mindprint'])} | {peer.get('label', row['peer'])} | "
                         f"— | — | not measured | {target} | — | — | — | — | {row['reason']} |")
            continue
        mark = {"met": " ✅", "missed": " ❌", "info": ""}[row["status"]]
        how = (f"interleaved, {row['rounds']} round(s); per-step ratio {_f(row.get('ratio_paired_steps'), 2)}x"
               if row.get("measured") == "interleaved" else f"separate runs, {row.get('rounds', 1)} round(s)")
        judged = ""
        if row.get("judged_on") == "tokens/s":
            how = how.split(";")[0] + f"; judged on tokens/s (s/step ratio {_f(row.get('ratio_step'), 2)}x)"
            judged = " (tokens/s)"
        lines.append(
            f"| {row['title']} | {mp['label']} | {peer['label']} | {how} | "
            f"{_pair(mp['sec_per_step_median'], peer['sec_per_step_median'])} | **{_f(row['ratio'], 2)}x**{judged}{mark} | "
            f"{target} | "
            f"{_f(row['ratio_per_token'], 2)}x | {_f(row['ratio_amortised'], 2)}x | "
            f"{_pair(mp['one_off_s'], peer['one_off_s'], 1)} | {_pair(mp['peak_rss_mb'], peer['peak_rss_mb'], 0)} | "
            f"{_pair(row['eval_after_mindprint'], row['eval_after_peer'], 4)} |")
    lines += [
        "",
        ("Fixed-set loss: SFT = token-mean completion cross-entropy, DPO = mean sigmoid DPO loss against the base "
        f"model, both on the first {meta['eval_n']} records of the fixed sets, computed the same way on both sides "
        "after the run; every side starts from the same initial adapter (the kit's draw of PEFT's initialisation for "
        "the run's seed, set before the timed steps), and training losses still differ step by step because each "
        "raw library orders batches its own way)."),
        *_length_mix_lines(meta),
        "",
        "## DPO peak memory vs SFT with the same number of sequences per step",
        "",
        ("Peak RSS of the training phase (VmHWM reset just before the trainer is built, so it includes the loaded "
        "weights and everything the trainer allocates); whole-process peaks (ru_maxrss) for reference."),
        "",
        ("| backend | DPO training peak RSS MB (B pairs) | SFT training peak RSS MB (2B sequences) | ratio | target | "
        "whole-process peak MB DPO / SFT |"),
        "|---|---|---|---|---|---|",
    ]
    for m in results["memory"]:
        if m["status"] == "not measured":
            lines.append(f"| {m['backend']} | — | — | not measured | <= {m['target']}x | {m['reason']} |")
            continue
        mark = " ✅" if m["status"] == "met" else " ❌"
        lines.append(f"| {m['backend']} | {_f(m['dpo_train_peak_rss_mb'], 0)} | {_f(m['sft_train_peak_rss_mb'], 0)} | "
                     f"**{_f(m['ratio'], 2)}x**{mark} | <= {m['target']}x | "
                     f"{_pair(m['dpo_peak_rss_mb'], m['sft_peak_rss_mb'], 0)} |")
    lines += _variant_lines(jobs)
    lines += _efficiency_lines(results)
    efficiency = {r["job"]: r for r in results.get("efficiency") or build_efficiency(jobs, results.get("throughput") or {})}
    lines += [
        "",
        "## Every job",
        "",
        ("| job | s/step (median) | tokens/s | tokens/step | one-off s | first step s | peak RSS MB | "
        "loss before → after (fixed set) | train loss (last 5) | GFLOP/s (fraction of matmul limit) | "
        "load avg start → end | notes |"),
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for jd in JOBS:
        j = jobs.get(jd.name)
        if j is None:
            continue
        if not j.get("ok"):
            lines.append(f"| {jd.name} | — | — | — | — | — | — | — | — | — | — | "
                         f"{j.get('skipped') or j.get('error', 'failed')} |")
            continue
        key = _eval_key(j["task"])
        before = j.get("eval_before", {})
        before_s = _f(before.get("loss"), 4) if j["task"] == "sft" else \
            f"ref logp {_f(before.get('ref_logp_chosen'), 2)}/{_f(before.get('ref_logp_rejected'), 2)}"
        notes = list(j.get("notes", []))
        if not j.get("tokens_exact"):
            notes.append("tokens/s estimated from mean sequence length")
        if j.get("blas"):
            notes.append(f"BLAS: {j['blas']}")
        if j.get("device_peak_measure"):
            notes.append(f"peak device memory {_f(j.get('device_peak_mb'), 0)} MB ({j['device_peak_measure']})")
        lines.append(
            f"| {jd.name} | {_f(j['sec_per_step'])} ({_f(j['sec_per_step_median'])}) | {_f(j['tokens_per_s'], 0)} | "
            f"{_f(j['tokens_per_step'], 0)} | {_f(j['one_off_s'], 1)} | {_f(j['first_step_s'], 2)} | "
            f"{_f(j['peak_rss_mb'], 0)} | {before_s} → {_f(j.get('eval_after', {}).get(key), 4)} | "
            f"{_f(j.get('train_loss_last5_mean'), 4)} | {_fraction_cell(efficiency.get(jd.name))} | "
            f"{_load(j.get('loadavg_start'))} → {_load(j.get('loadavg_end'))} | "
            f"{'; '.join(notes)} |")
    analysis = results.get("analysis")
    if analysis:
        lines += ["", "## Analysis", "", analysis.strip()]
    return "\n".join(lines) + "\n"
