"""The #20 fault probe, re-runnable: every case for real, in child processes, on the tiny model, per backend.

    uv run python -m tools.fault_probe --backend pytorch|mlx|both [--kills N] [--swap-kills N] [--write FILE]

Cases: SIGKILLs at random moments inside the atomic directory swap (the child's renames are slowed by a random
sleep injected by this probe only, so kills land between them) and during `mindprint sft` with a checkpoint
every step (each killed run is resumed and must match the uninterrupted run bit for bit, leaving no temporary
behind); a diverging run with periodic saves; a YAML alias bomb; an oversized record; colliding and refused
ids; each failure class of the issue (one `error:` line, exit 2 or 1, no traceback); a corrupted embedding
row in a written merge; a wrong-base adapter. It prints (and with --write saves) a table
case -> expected -> observed -> ok, and exits 1 when any case is not ok.

The probe runs the installed ``mindprint`` command and the packages' public API; it imports the app nowhere.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SIBLING = re.compile(r"^\..+\.(tmp|new|old)-\d+")  # fileio's temporaries (named after the writing process)
SFT = [{"instruction": f"What is {a} plus {b}?", "output": f"{a} plus {b} is {a + b}.", "topic_id": "u/c/math"}
       for a in range(1, 7) for b in range(1, 3)]


@dataclass
class Row:
    backend: str
    case: str
    expected: str
    observed: str
    ok: bool


@dataclass
class Run:
    code: int
    stderr: str
    seconds: float
    peak_mb: float


@dataclass
class Probe:
    work: Path
    tiny: Path
    rows: list[Row] = field(default_factory=list)
    rng: random.Random = field(default_factory=lambda: random.Random(20))

    def add(self, backend: str, case: str, expected: str, observed: str, ok: bool) -> None:
        self.rows.append(Row(backend, case, expected, observed, ok))
        print(f"[{'ok' if ok else 'FAIL'}] {backend} {case}: {observed}", flush=True)


# -- running things ------------------------------------------------------------------------------------------

def _exe() -> list[str]:
    script = Path(sys.executable).parent / "mindprint"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "mindprint_trainer"]


def command(*args: str) -> list[str]:
    """The command line: ``--log-format plain`` (timestamped lines) after the subcommand."""
    return [*_exe(), args[0], "--log-format", "plain", *args[1:]]


def _env() -> dict[str, str]:
    env = {**os.environ, "COLUMNS": "200", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    env.pop("MINDPRINT_BACKEND", None)
    return env


def _wait(proc: subprocess.Popen[bytes], started: float, err: Path) -> Run:
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Run(proc.returncode, err.read_text(errors="replace"), time.monotonic() - started, usage.ru_maxrss / 1024)


def cli(work: Path, *args: str, timeout: float = 900) -> Run:
    """``mindprint ARGS`` in a child process: exit code, stderr, wall time and the child's peak RSS."""
    err = Path(tempfile.mkstemp(dir=work, suffix=".stderr")[1])
    started = time.monotonic()
    with err.open("wb") as f:
        proc = subprocess.Popen(command(*args), stdout=subprocess.DEVNULL, stderr=f, cwd=work, env=_env())
    signal.signal(signal.SIGALRM, lambda *_: proc.kill())
    signal.alarm(int(timeout))
    try:
        return _wait(proc, started, err)
    finally:
        signal.alarm(0)


def python(work: Path, code: str, *args: str) -> Run:
    """A child Python running ``code`` (the probe's own scripts; faults are injected there, never in the product)."""
    script = work / f"child-{time.monotonic_ns()}.py"
    script.write_text(textwrap.dedent(code))
    err = Path(str(script) + ".stderr")
    started = time.monotonic()
    with err.open("wb") as f:
        proc = subprocess.Popen([sys.executable, str(script), *args], stdout=subprocess.DEVNULL, stderr=f,
                                cwd=work, env=_env())
    return _wait(proc, started, err)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error: ")]


def one_line(run: Run, code: int, *needles: str) -> tuple[bool, str]:
    """Exit ``code``, exactly one ``error:`` line (the last line), containing ``needles``, and no traceback."""
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    errors = error_lines(run.stderr)
    ok = (run.code == code and len(errors) == 1 and bool(lines) and lines[-1] == errors[0]
          and "Traceback" not in run.stderr and all(n in errors[0] for n in needles))
    shown = errors[0] if len(errors) == 1 else f"{len(errors)} error lines; last: {lines[-1] if lines else ''}"
    return ok, f"exit {run.code}: {shorten(shown)}" + (" (traceback!)" if "Traceback" in run.stderr else "")


def shorten(text: str, n: int = 150) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[:n - 3] + "..."


def leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob(".*") if SIBLING.match(p.name)] if root.exists() else []


def tensors(path: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(path))


def all_finite(root: Path) -> tuple[int, int]:
    """(safetensors files under root, how many of them hold a non-finite value)."""
    # weights only: rng_state.safetensors stores Python's unset gauss_next as NaN by design
    files = sorted(f for f in root.rglob("*.safetensors") if f.name != "rng_state.safetensors")
    bad = sum(any(not np.isfinite(v).all() for v in tensors(f).values()) for f in files)
    return len(files), bad


def only_run(out: Path) -> Path | None:
    runs = [p for p in out.iterdir() if p.is_dir()] if out.is_dir() else []
    return runs[0] if len(runs) == 1 else None


def write_jsonl(path: Path, rows: Sequence[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


TINY_MODELS: dict[str, dict[str, object]] = {
    "tiny": {}, "tiny-untied": {"tie_word_embeddings": False}, "tiny-seed1": {"seed": 1}, "tiny-3layers": {"num_layers": 3}}


def tiny_models(work: Path) -> dict[str, Path]:
    """The tiny random Llamas the cases use, built in one child process (torch stays out of this process, so the
    children it forks start small and their peak RSS is their own)."""
    run = python(work, f"""
        import sys
        sys.path.insert(0, {str(ROOT / "tools")!r})
        from tiny_model import build_tiny_llama
        for name, kw in {TINY_MODELS!r}.items():
            build_tiny_llama({str(work)!r} + "/" + name, **kw)
    """)
    if run.code != 0:
        raise SystemExit(f"building the tiny models failed: {run.stderr[-500:]}")
    return {name: work / name for name in TINY_MODELS}


# -- 1. kills inside the directory swap ----------------------------------------------------------------------

SWAP_CHILD = """
    import hashlib, os, random, sys, time
    from pathlib import Path
    from mindprint_interfaces import fileio

    real = os.replace
    def slow_replace(a, b):  # the probe's fault injection: a random pause before every rename of the swap
        time.sleep(random.uniform(0, 0.03))
        real(a, b)
    fileio.os.replace = slow_replace
    target = Path(sys.argv[1])
    version = int((target / "VERSION").read_text()) if (target / "VERSION").exists() else 0
    while True:
        version += 1
        with fileio.atomic_directory(target) as tmp:
            for i in range(3):
                (tmp / f"part{i}.bin").write_bytes(hashlib.sha256(f"{version}-{i}".encode()).digest() * 20000)
            (tmp / "VERSION").write_text(str(version))
        print(version, flush=True)
"""


def swap_complete(target: Path) -> int | None:
    """The version held by ``target`` when every part matches it, else None."""
    import hashlib

    try:
        version = int((target / "VERSION").read_text())
        for i in range(3):
            want = hashlib.sha256(f"{version}-{i}".encode()).digest() * 20000
            if (target / f"part{i}.bin").read_bytes() != want:
                return None
    except (OSError, ValueError):
        return None
    return version


def probe_swap(p: Probe, kills: int) -> None:
    from mindprint_interfaces.fileio import recover_directory

    root = p.work / "swap"
    root.mkdir()
    target = root / "adapter"
    inside = complete = fresh = cleaned = 0
    script = root / "child.py"
    script.write_text(textwrap.dedent(SWAP_CHILD))
    for _ in range(kills):
        proc = subprocess.Popen([sys.executable, str(script), str(target)], stdout=subprocess.PIPE, env=_env())
        assert proc.stdout is not None
        proc.stdout.readline()  # one version committed: the loop is running
        time.sleep(p.rng.uniform(0.0, 0.4))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        inside += (not target.exists()) or bool(leftovers(root))  # the kill interrupted a save
        fresh += not target.exists()
        recover_directory(target)
        complete += swap_complete(target) is not None
        cleaned += not leftovers(root)
    ok = complete == kills and cleaned == kills
    p.add("-", "SIGKILL inside the directory swap",
          "after recovery the target is complete (every part of one version), no temporaries left",
          f"{kills} kills: {inside} interrupted a save ({fresh} left no target before recovery); "
          f"complete after recovery {complete}/{kills}, clean {cleaned}/{kills}", ok)


# -- 2. kills during training with a checkpoint every step, then resume --------------------------------------

STEPS = 6  # the killed-and-resumed runs' optimizer steps (a checkpoint after each)


def sft_args(backend: str, model: Path, data: Path, *extra: str) -> list[str]:
    return ["sft", "-b", backend, "-m", str(model), "-d", str(data), "--set", f"sft.max_steps={STEPS}",
            "--set", "sft.save_steps=1", "--set", "sft.per_device_batch_size=2", "--set", "sft.seed=7",
            "--set", "sft.max_length=64", *extra]


def probe_kill_resume(p: Probe, backend: str, kills: int) -> Path | None:
    root = p.work / f"resume-{backend}"
    root.mkdir()
    data = write_jsonl(root / "sft.jsonl", SFT)
    ref = cli(root, *sft_args(backend, p.tiny, data), "-o", str(root / "ref"))
    ref_run = only_run(root / "ref")
    if ref.code != 0 or ref_run is None:
        p.add(backend, "kill -9 during sft + resume", "reference run succeeds", f"exit {ref.code}: "
              f"{shorten(ref.stderr[-300:])}", False)
        return None
    want = tensors(ref_run / "adapters" / "sft" / "adapter_model.safetensors")
    killed = matched = resumed_ok = finished = before_first = 0
    left: list[str] = []
    for k in range(kills):
        out, res_out = root / f"kill{k}", root / f"resumed{k}"
        err = root / f"kill{k}.stderr"
        with err.open("wb") as f:
            proc = subprocess.Popen(command(*sft_args(backend, p.tiny, data), "-o", str(out)),
                                    stdout=subprocess.DEVNULL, stderr=f, cwd=root, env=_env())
        # a random moment inside the training: after a random step's line (1..5 of 6), within the time one
        # step and its checkpoint take (a kill timed from the start alone mostly landed after the last step)
        at = p.rng.randint(1, STEPS - 1)
        while proc.poll() is None and f"step {at}/" not in err.read_text(errors="replace"):
            time.sleep(0.01)
        time.sleep(p.rng.uniform(0.0, 1.0) * _train_seconds(ref.stderr) / STEPS)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed += 1
        proc.wait()
        run = only_run(out)
        if run is None:
            continue
        res = cli(root, *sft_args(backend, p.tiny, data), "--resume", str(run), "-o", str(res_out))
        done = only_run(res_out)
        final = done / "adapters" / "sft" if res.code == 0 and done is not None else None
        refused = final is None and res.code == 2 and "no complete checkpoint" in res.stderr
        if refused and (run / "adapters" / "sft").is_dir():
            final = run / "adapters" / "sft"  # killed after training (the checkpoints are gone, the adapter saved)
            finished += 1
        elif refused and _last_step(err.read_text(errors="replace")) <= 1:
            # killed while the first checkpoint (step 1) was being written: nothing complete to resume from, and
            # the refusal is the right answer; from step 2 on a complete checkpoint-1 exists and must resume
            before_first += 1
            left += [str(x.relative_to(root)) for x in leftovers(run)]
            continue
        if final is not None:
            resumed_ok += 1
            got = tensors(final / "adapter_model.safetensors")
            matched += got.keys() == want.keys() and all(np.array_equal(got[n], want[n]) for n in want)
        else:
            left.append(f"resume {k}: exit {res.code} {shorten(' '.join(error_lines(res.stderr)))}")
        left += [str(x.relative_to(root)) for x in leftovers(run) + leftovers(res_out)]
    ok = resumed_ok + before_first == kills and matched == resumed_ok and not left
    p.add(backend, "kill -9 during sft (checkpoint every step) + --resume",
          "every resume succeeds (or the run had saved its final adapter, or was killed before its first "
          "checkpoint was complete and resume refuses), final adapter == uninterrupted run "
          "bit for bit, no temporaries left",
          f"{kills} runs, {killed} killed ({finished} after training: final adapter kept, resume refused with "
          f"'no complete checkpoint'; {before_first} during the first checkpoint's write: resume refused, nothing "
          f"complete to continue); resumed or complete {resumed_ok}/{kills}, bit-identical {matched}/{resumed_ok}, "
          f"leftovers/failures: {left or 0}", ok)
    return ref_run / "adapters" / "sft"


def _last_step(stderr: str) -> int:
    """The last ``step N/`` a killed run printed (0 when none)."""
    steps = [int(m) for m in re.findall(r"step (\d+)/", stderr)]
    return max(steps, default=0)


def _train_seconds(stderr: str) -> float:
    stamps = [line[:19] for line in stderr.splitlines() if " step " in line and re.match(r"\d{4}-\d\d-\d\d ", line)]
    if len(stamps) < 2:
        return 2.0
    from datetime import datetime

    first, last = (datetime.fromisoformat(s) for s in (stamps[0], stamps[-1]))
    return max(1.0, (last - first).total_seconds() + 1.0)


# -- 3. a diverging run with periodic saves ------------------------------------------------------------------

def probe_diverge(p: Probe, backend: str) -> None:
    root = p.work / f"diverge-{backend}"
    root.mkdir()
    data = write_jsonl(root / "sft.jsonl", SFT)
    # lr 1e30: the loss turns NaN within a few steps; lr 1e39 (inf in float32): the weights after step 1 are
    # non-finite while the only loss seen (step 1's, before the update) is finite
    for steps, lr in ((6, "1e30"), (1, "1e39")):
        out = root / f"steps{steps}"
        run = cli(root, *sft_args(backend, p.tiny, data, "--set", f"sft.learning_rate={lr}",
                                  "--set", f"sft.max_steps={steps}", "--set", "sft.max_grad_norm=0"),
                  "-o", str(out))
        files, bad = all_finite(out)
        ok, shown = one_line(run, 1)
        p.add(backend, f"diverging sft (lr {lr}, save every step, max_steps={steps})",
              "exit 1, one error line; no saved adapter/checkpoint holds a non-finite value",
              f"{shown}; {files} safetensors saved, {bad} non-finite", ok and bad == 0)


def probe_diverge_curriculum(p: Probe, backend: str) -> None:
    root = p.work / f"diverge-train-{backend}"
    data = root / "data"
    data.mkdir(parents=True)
    write_jsonl(data / "sft_data.jsonl", [{**r, "topic_id": f"u{i % 2}/c/t{i % 2}"} for i, r in enumerate(SFT)])
    out = root / "runs"
    run = cli(root, "train", "-b", backend, "-m", str(p.tiny), "--data-dir", str(data),
              "--set", "sft.learning_rate=1e30", "--set", "sft.max_grad_norm=0", "--set", "sft.save_steps=1",
              "--set", "pipeline.sft_epochs_per_topic=1", "--set", "pipeline.max_retries_per_topic=0",
              "--set", "pipeline.topic_pass_threshold=0", "--set", "pipeline.eval_max_new_tokens=2",
              "--set", "pipeline.eval_max_records=1", "-o", str(out))
    run_dir = only_run(out)
    summary = run_dir is not None and (run_dir / "summary.md").is_file()
    passed = "?"
    if run_dir is not None and (run_dir / "pipeline_result.json").is_file():
        result = json.loads((run_dir / "pipeline_result.json").read_text())
        statuses = [t["status"] for u in result["units"] for c in u["chapters"] for t in c["topics"]]
        passed = f"{statuses.count('passed')}/{len(statuses)} passed"
    files, bad = all_finite(run_dir / "adapters") if run_dir is not None else (0, 0)
    ok = run.code in (0, 1) and "Traceback" not in run.stderr and summary and passed.startswith("0/") and bad == 0
    p.add(backend, "diverging curriculum (2 units, pass threshold 0)",
          "no topic passed, no non-finite adapter kept, summary.md written, no traceback",
          f"exit {run.code}, {passed}, summary.md {'yes' if summary else 'no'}, adapters {files} ({bad} non-finite)",
          ok)


# -- 4. YAML alias bomb, oversized record ----------------------------------------------------------------------

def probe_alias_bomb(p: Probe) -> None:
    root = p.work / "alias"
    root.mkdir()
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    cfg = root / "bomb.yaml"
    cfg.write_text("x-bomb:\n" + textwrap.indent("\n".join(lines), "  ") + "\nsft:\n  learning_rate: *a9\n")
    run = cli(root, "sft", "--config", str(cfg), "-o", str(root / "runs"))
    ok, shown = one_line(run, 2, "alias")
    size = max((len(line) for line in error_lines(run.stderr)), default=0)
    p.add("-", "YAML alias bomb (9 levels x 9) in a config value",
          "exit 2, one short line naming the alias limit; bounded memory",
          f"{shown}; line {size} chars, child peak {run.peak_mb:.0f} MB, {run.seconds:.1f} s",
          ok and size < 500 and run.peak_mb < 1000)


def probe_oversized(p: Probe, backend: str) -> None:
    root = p.work / f"oversized-{backend}"
    root.mkdir()
    data = write_jsonl(root / "sft.jsonl", [SFT[0], {"instruction": "Tell me a story.",
                                                     "output": "once upon a time " * 3_000_000}])
    mb = data.stat().st_size / 1e6
    run = cli(root, "sft", "-b", backend, "-m", str(p.tiny), "-d", str(data), "--set", "sft.max_length=64",
              "--set", "sft.max_steps=1", "-o", str(root / "runs"))
    text = " ".join(run.stderr.split())
    named = f"{data}:2" in text and "longer than max_length=64 were truncated" in text
    p.add(backend, f"oversized record ({mb:.0f} MB, max_length=64)",
          "trains, truncation reported with file:line, cost bounded (was 253 s / 10.9 GB for 50 MB)",
          f"exit {run.code}, reported {'yes' if named else 'no'}, {run.seconds:.1f} s, child peak {run.peak_mb:.0f} MB",
          run.code == 0 and named and run.peak_mb < 4000)


# -- 5. ids ----------------------------------------------------------------------------------------------------

def probe_ids(p: Probe, backend: str) -> None:
    root = p.work / f"ids-{backend}"
    data = root / "data"
    data.mkdir(parents=True)
    ids = ["u/c/日本", "u/c/中文", "_/c/x", "-/c/x"]
    write_jsonl(data / "sft_data.jsonl", [{**SFT[i], "topic_id": t} for i, t in enumerate(ids)])
    out = root / "runs"
    run = cli(root, "train", "-b", backend, "-m", str(p.tiny), "--data-dir", str(data),
              "--set", "pipeline.sft_epochs_per_topic=1", "--set", "pipeline.max_retries_per_topic=0",
              "--set", "pipeline.eval_max_new_tokens=2", "--set", "pipeline.eval_max_records=1", "-o", str(out))
    run_dir = only_run(out)
    targets: set[str] = set()
    links = 0
    if run_dir is not None and (run_dir / "adapters").is_dir():
        for link in (run_dir / "adapters").iterdir():
            if link.name != "final":
                links += 1
                targets.add(str(link.resolve()))
    merged = sorted(x.name for x in (run_dir / "merged").iterdir()) if run_dir and (run_dir / "merged").is_dir() else []
    ok = run.code in (0, 1) and "Traceback" not in run.stderr and links == len(ids) and len(targets) == len(ids)
    p.add(backend, "colliding ids (u/c/日本, u/c/中文, units _ and -)",
          "one adapter directory per topic (injective names), no traceback",
          f"exit {run.code}: {links} topic links -> {len(targets)} distinct adapters; merged units {merged}", ok)
    for bad, why in (("./c/x", "."), ("../c/x", ".."), ("u/c/a\u0000b", "NUL"), ("u/c/" + "x" * 300, "300 chars")):
        d = root / f"bad-{len(why)}-{why[:1]}"
        d.mkdir()
        write_jsonl(d / "sft_data.jsonl", [SFT[0], {**SFT[1], "topic_id": bad}])
        r = cli(root, "train", "-b", backend, "-m", str(p.tiny), "--data-dir", str(d), "-o", str(root / "refused"))
        ok, shown = one_line(r, 2, "sft_data.jsonl:2", "topic_id")
        p.add(backend, f"refused topic id ({why})", "exit 2, one line with file:line and the field", shown, ok)


# -- 6. failure classes ----------------------------------------------------------------------------------------

def probe_failure_classes(p: Probe, backend: str) -> None:
    root = p.work / f"classes-{backend}"
    root.mkdir()
    data = write_jsonl(root / "sft.jsonl", SFT[:2])

    def model_copy(name: str) -> Path:
        out = root / name
        shutil.copytree(p.tiny, out)
        return out

    pickle = model_copy("pickle-only")
    (pickle / "model.safetensors").unlink()
    (pickle / "pytorch_model.bin").write_bytes(b"never unpickled")
    ok, shown = one_line(cli(root, "generate", "hi", "-b", backend, "-m", str(pickle)), 2, "pickle")
    p.add(backend, "model dir with only pytorch_model.bin", "exit 2, one line naming pickle", shown, ok)

    remote = model_copy("remote-code")
    cfg = json.loads((remote / "config.json").read_text())
    cfg.update(model_type="my_custom_llm", auto_map={"AutoModelForCausalLM": "modeling_custom.CustomLM"})
    (remote / "config.json").write_text(json.dumps(cfg))
    (remote / "modeling_custom.py").write_text("open('REMOTE_CODE_RAN', 'w').close()\n")
    ok, shown = one_line(cli(root, "generate", "hi", "-b", backend, "-m", str(remote)), 2, "remote code")
    ran = (root / "REMOTE_CODE_RAN").exists()
    p.add(backend, "model needing remote code", "exit 2, one line; the code never runs",
          shown + ("; REMOTE CODE RAN" if ran else ""), ok and not ran)

    for value in (".inf", ".nan"):
        bad = root / f"epochs{value}.yaml"
        bad.write_text(f"sft:\n  num_epochs: {value}\n")
        ok, shown = one_line(cli(root, "sft", "-b", backend, "--config", str(bad), "-m", str(p.tiny), "-d",
                                 str(data), "-o", str(root / "r")), 2, "num_epochs")
        p.add(backend, f"num_epochs: {value}", "exit 2, one line naming sft.num_epochs", shown, ok)

    ok, shown = one_line(cli(root, "sft", "-b", backend, "-m", str(p.tiny), "-d", str(data), "-o", str(root / "t"),
                             "--set", "sft.target_modules=[nonexistent]", "--set", "sft.max_steps=1"),
                         2, "nonexistent")
    p.add(backend, "target_modules: [nonexistent]", "exit 2, one line naming the module", shown, ok)

    a_file = root / "a-file"
    a_file.write_text("x")
    ok, shown = one_line(cli(root, "sft", "-b", backend, "-m", str(p.tiny), "-d", str(data), "-o", str(a_file)),
                         2, "is a file")
    p.add(backend, "-o pointing at a file", "exit 2, one line", shown, ok)

    probe_race(p, backend, root, data)
    probe_disk_full(p, backend, root, data)

    from mindprint_interfaces import AdapterConfig
    from mindprint_kit.adapter_files import write_adapter

    cfg = json.loads((p.tiny / "config.json").read_text())
    rng = np.random.default_rng(0)
    weights = {(layer, "self_attn.q_proj"): (rng.normal(size=(4, cfg["hidden_size"])).astype(np.float32),
                                             np.full((cfg["hidden_size"], 4), np.nan, np.float32))
               for layer in range(cfg["num_hidden_layers"])}
    nan = write_adapter(root / "nan-adapter", AdapterConfig(r=4, alpha=8, target_modules=("q_proj",)), weights)
    run = cli(root, "merge", "-b", backend, "-m", str(p.tiny), "-a", str(nan), str(root / "merged-nan"))
    ok, shown = one_line(run, 2, "non-finite")
    p.add(backend, "merging a NaN adapter", "exit 2, one line; nothing written",
          shown + ("; OUTPUT WRITTEN" if (root / "merged-nan").exists() else ""),
          ok and not (root / "merged-nan").exists())


def probe_race(p: Probe, backend: str, root: Path, data: Path) -> None:
    """Three runs started together into one output directory (the same second: the same run name)."""
    out = root / "race"
    procs = []
    for i in range(3):
        err = root / f"race{i}.stderr"
        with err.open("wb") as f:
            procs.append((subprocess.Popen(command("sft", "-b", backend, "-m", str(p.tiny), "-d", str(data),
                                                   "--set", "sft.max_steps=1", "-o", str(out)),
                                           stdout=subprocess.DEVNULL, stderr=f, cwd=root, env=_env()), err))
    codes = [proc.wait() for proc, _ in procs]
    texts = [err.read_text(errors="replace") for _, err in procs]
    runs = sorted(x.name for x in out.iterdir()) if out.is_dir() else []
    ok = codes == [0, 0, 0] and len(runs) == 3 and not any("Traceback" in t for t in texts)
    p.add(backend, "3 runs racing for one run directory", "all succeed into distinct run directories, no traceback",
          f"exits {codes}, {len(runs)} run directories" + ("; traceback" if any("Traceback" in t for t in texts)
                                                          else ""), ok)


def probe_disk_full(p: Probe, backend: str, root: Path, data: Path) -> None:
    """ENOSPC for real: a small tmpfs (when one can be mounted here) filled to leave a few kB to a few dozen kB,
    so the run stops at a different write each time (config, metrics, adapter, plots)."""
    mnt = root / "small-fs"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True,
                      check=False).returncode != 0:
        p.add(backend, "disk full (ENOSPC)", "exit 1, one line naming the file and --resume",
              "not run: no small filesystem can be mounted here (covered by tests/trainer/test_cli_failures.py "
              "with an injected ENOSPC)", True)
        return
    try:
        for free_kb in (0, 16, 48, 96):
            filler = mnt / "filler"
            filler.unlink(missing_ok=True)
            for x in mnt.iterdir():
                shutil.rmtree(x)
            stat = os.statvfs(mnt)
            filler.write_bytes(b"\0" * max(0, stat.f_bavail * stat.f_frsize - free_kb * 1024))
            run = cli(root, "sft", "-b", backend, "-m", str(p.tiny), "-d", str(data), "--set", "sft.max_steps=2",
                      "-o", str(mnt / "runs"))
            if run.code == 0:
                ok, shown = True, "exit 0 (everything fitted)"
            else:
                ok, shown = one_line(run, 1, "no space left on device")
            p.add(backend, f"disk full (ENOSPC: a tmpfs with {free_kb} kB free)",
                  "exit 1, one line naming the file (or exit 0 when it fits), no traceback", shown, ok)
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


# -- 7. a corrupted embedding row in a written merge; 8. a wrong-base adapter ----------------------------------

CORRUPT_CHILD = """
    import sys
    from pathlib import Path
    import numpy as np
    from safetensors.numpy import load_file, save_file
    from mindprint_interfaces import MergeVerificationError, create_backend

    backend_name, base, adapter, target = sys.argv[1], Path(sys.argv[2]), sys.argv[3], Path(sys.argv[4])
    backend = create_backend(backend_name, device="cpu", dtype="float32", seed=0)
    model = backend.load_model(base)
    model.load_adapter(adapter)
    merge = __import__(f"mindprint_{'torch' if backend_name == 'pytorch' else 'mlx'}.merge", fromlist=["save_merged"])

    def corrupt(directory):  # the probe's fault: one embedding row of the last token, after the write
        [path] = sorted(Path(directory).glob("*.safetensors"))
        weights = load_file(str(path))
        name = next(k for k in weights if k.endswith("embed_tokens.weight"))
        weights[name] = weights[name].copy()
        weights[name][-1] += 0.5
        save_file(weights, str(path), metadata={"format": "pt"})

    try:
        merge.save_merged(model, target, _after_write=corrupt)
    except MergeVerificationError as exc:
        print(f"refused: {exc}", file=sys.stderr)
        sys.exit(3)
    sys.exit(0)
"""


def probe_corrupted_row(p: Probe, backend: str, untied: Path, adapter: Path | None) -> None:
    root = p.work / f"corrupt-{backend}"
    root.mkdir()
    if adapter is None:
        p.add(backend, "corrupted embedding row", "refused", "not run: no adapter (reference run failed)", False)
        return
    run = python(root, CORRUPT_CHILD, backend, str(untied), str(adapter), str(root / "merged"))
    written = (root / "merged").exists()
    refused = [line for line in run.stderr.splitlines() if line.startswith("refused: ")]
    ok = run.code == 3 and not written and bool(refused) and "embed_tokens" in refused[0]
    p.add(backend, "corrupted embedding row (untied model, token outside the probe batch)",
          "MergeVerificationError naming the tensor; nothing saved",
          f"exit {run.code}: {shorten(refused[0] if refused else run.stderr[-200:])}"
          + ("; MERGED DIR WRITTEN" if written else ""), ok)


def probe_wrong_base(p: Probe, backend: str, adapter: Path | None, other_seed: Path, deeper: Path) -> None:
    if adapter is None:
        p.add(backend, "wrong-base adapter", "refused", "not run: no adapter (reference run failed)", False)
        return
    for base, what, needle in ((other_seed, "same-shape base with other weights", "weights it modifies differ"),
                               (deeper, "3-layer base for a 2-layer adapter", "layer")):
        run = cli(p.work, "generate", "hi", "-b", backend, "-m", str(base), "-a", str(adapter),
                  "--max-new-tokens", "2")
        ok, shown = one_line(run, 2)
        found = any(needle in line.lower() for line in error_lines(run.stderr))
        p.add(backend, f"adapter onto a {what}", f"exit 2, one line naming what differs ({needle})", shown,
              ok and found)


# -- main -------------------------------------------------------------------------------------------------------

def backends(choice: str) -> Iterator[str]:
    yield from (("pytorch", "mlx") if choice == "both" else (choice,))


def table(rows: Sequence[Row]) -> str:
    out = ["| backend | case | expected | observed | ok |", "|---|---|---|---|---|"]
    for r in rows:
        cells = [r.backend, r.case, r.expected, r.observed.replace("|", "\\|"), "ok" if r.ok else "**FAIL**"]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.fault_probe", description=__doc__.split("\n\n")[0])
    ap.add_argument("--backend", choices=("pytorch", "mlx", "both"), default="both")
    ap.add_argument("--kills", type=int, default=3, help="killed-and-resumed sft runs per backend")
    ap.add_argument("--swap-kills", type=int, default=40, help="kills of the save loop (directory swap)")
    ap.add_argument("--only", default="", help="comma-separated case groups: swap,resume,diverge,alias,oversized,"
                                              "ids,classes,corrupt,wrongbase")
    ap.add_argument("--write", metavar="FILE", help="also write the table (markdown) to FILE")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args(argv)
    groups = set(filter(None, args.only.split(","))) or {"swap", "resume", "diverge", "alias", "oversized", "ids",
                                                         "classes", "corrupt", "wrongbase"}
    work = Path(tempfile.mkdtemp(prefix="mindprint-fault-probe-"))
    started = time.monotonic()
    try:
        models = tiny_models(work)
        p = Probe(work, models["tiny"])
        untied, other_seed, deeper = models["tiny-untied"], models["tiny-seed1"], models["tiny-3layers"]
        if "swap" in groups:
            probe_swap(p, args.swap_kills)
        if "alias" in groups:
            probe_alias_bomb(p)
        for b in backends(args.backend):
            adapter = probe_kill_resume(p, b, args.kills) if groups & {"resume", "corrupt", "wrongbase"} else None
            if "diverge" in groups:
                probe_diverge(p, b)
                probe_diverge_curriculum(p, b)
            if "oversized" in groups:
                probe_oversized(p, b)
            if "ids" in groups:
                probe_ids(p, b)
            if "classes" in groups:
                probe_failure_classes(p, b)
            if "corrupt" in groups:
                untied_adapter = _untied_adapter(p, b, untied)
                probe_corrupted_row(p, b, untied, untied_adapter)
            if "wrongbase" in groups:
                probe_wrong_base(p, b, adapter, other_seed, deeper)
        report = (f"{table(p.rows)}\n\n{sum(r.ok for r in p.rows)}/{len(p.rows)} ok, "
                  f"{time.monotonic() - started:.0f} s\n")
        print("\n" + report)
        if args.write:
            Path(args.write).write_text(report)
        return 0 if all(r.ok for r in p.rows) else 1
    finally:
        if args.keep:
            print(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def _untied_adapter(p: Probe, backend: str, untied: Path) -> Path | None:
    root = p.work / f"untied-{backend}"
    root.mkdir()
    data = write_jsonl(root / "sft.jsonl", SFT)
    run = cli(root, "sft", "-b", backend, "-m", str(untied), "-d", str(data), "--set", "sft.max_steps=2",
              "-o", str(root / "runs"))
    done = only_run(root / "runs")
    return done / "adapters" / "sft" if run.code == 0 and done is not None else None


if __name__ == "__main__":
    sys.exit(main())
