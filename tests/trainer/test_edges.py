"""The CLI's rough edges of #21: stdin prompts, merge never overwrites silently, SIGTERM = Ctrl-C, --resume
on a run of another kind, --threads."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from mindprint_interfaces import ConfigError
from mindprint_trainer.cli_inputs import check_merge_target, check_resume_kind, prompt_text, run_kind
from mindprint_trainer.threads import THREAD_VARIABLES, default_threads
from tests.trainer.helpers import mindprint_exe, run_mindprint

SFT = "".join(json.dumps({"instruction": f"Question {i}?", "output": f"Answer number {i}."}) + "\n" for i in range(8))


def _one_error(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in stderr, stderr
    return lines[0]


# -- generate - -------------------------------------------------------------------------------------------------

def test_dash_reads_the_prompt_from_stdin() -> None:
    assert prompt_text(["-"], io.StringIO("What is\nphotosynthesis?\n")) == "What is\nphotosynthesis?"
    assert prompt_text(["a", "-", "b"], io.StringIO("unused")) == "a - b"  # only a lone '-' means stdin
    with pytest.raises(ConfigError, match="stdin was empty"):
        prompt_text(["-"], io.StringIO("  \n"))


@pytest.mark.torch
def test_generate_dash_answers_the_stdin_prompt(tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    from mindprint_trainer import cli

    common = ["generate", "--backend", "pytorch", "--model", str(tiny_model_dir), "--raw", "--max-new-tokens", "6",
              "--set", "generation.temperature=0"]

    def answer(*prompt: str, stdin: str = "") -> str:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        assert cli.main([*common, *prompt]) == 0, capsys.readouterr().err
        return capsys.readouterr().out

    from_stdin = answer("-", stdin="Plants make sugar\n")
    assert from_stdin == answer("Plants", "make", "sugar")  # greedy: the same prompt gives the same answer
    assert from_stdin != answer("-", "-", stdin="Plants make sugar\n")  # "- -" is the text "- -", not stdin


# -- merge ------------------------------------------------------------------------------------------------------

def test_merge_target_rules(tmp_path: Path) -> None:
    check_merge_target(tmp_path / "new", force=False)
    (tmp_path / "empty").mkdir()
    check_merge_target(tmp_path / "empty", force=False)
    full = tmp_path / "full"
    full.mkdir()
    (full / "config.json").write_text("{}")
    with pytest.raises(ConfigError, match="exists and is not empty; pass --force"):
        check_merge_target(full, force=False)
    check_merge_target(full, force=True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        check_merge_target(tmp_path / "file", force=True)


def test_merge_refuses_a_non_empty_target_before_loading_anything(tmp_path: Path) -> None:
    out = tmp_path / "merged"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    res = run_mindprint("merge", "--backend", "pytorch", "--model", str(tmp_path / "m"), "--adapter",
                        str(tmp_path / "a"), str(out))
    assert res.returncode == 2
    assert f"merge: {out} exists and is not empty; pass --force" in _one_error(res.stderr)
    assert (out / "keep.txt").read_text() == "precious"


@pytest.mark.torch
def test_merge_force_replaces_the_target(tmp_path: Path, tiny_model_dir: Path) -> None:
    import numpy as np

    from mindprint_interfaces import AdapterConfig
    from mindprint_kit.adapter_files import write_adapter

    cfg = json.loads((tiny_model_dir / "config.json").read_text())
    rng = np.random.default_rng(0)
    weights = {(layer, "self_attn.q_proj"): (rng.normal(size=(4, cfg["hidden_size"])).astype(np.float32) * 0.1,
                                             rng.normal(size=(cfg["hidden_size"], 4)).astype(np.float32) * 0.1)
               for layer in range(cfg["num_hidden_layers"])}
    adapter = write_adapter(tmp_path / "adapter", AdapterConfig(r=4, alpha=8, target_modules=("q_proj",)), weights)
    out = tmp_path / "merged"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    from mindprint_trainer import cli

    assert cli.main(["merge", "-b", "pytorch", "-m", str(tiny_model_dir), "-a", str(adapter), str(out), "--force"]) == 0
    assert (out / "config.json").is_file() and not (out / "keep.txt").exists()


# -- --resume on a run of another kind ------------------------------------------------------------------------

def test_run_kind_from_the_directory_name_or_the_summary(tmp_path: Path) -> None:
    assert run_kind(tmp_path / "20261202-001500-sft") == "sft"
    assert run_kind(tmp_path / "20261202-001500-train-3") == "train"
    other = tmp_path / "renamed"
    other.mkdir()
    assert run_kind(other) is None
    (other / "summary.md").write_text("# mindprint dpo (interrupted)\n")
    assert run_kind(other) == "dpo"
    check_resume_kind(tmp_path / "20261202-001500-train", "train")


def test_train_resume_on_an_sft_run_says_so(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "20261202-001500-sft"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("backend:\n  type: pytorch\n")
    res = run_mindprint("train", "--resume", str(run), cwd=tmp_path)
    assert res.returncode == 2
    line = _one_error(res.stderr)
    assert f"--resume: {run} is a `mindprint sft` run, not a `mindprint train` run" in line
    assert "sft_data.jsonl" not in line


# -- SIGTERM ----------------------------------------------------------------------------------------------------

_SIGTERM_SCRIPT = textwrap.dedent("""
    import sys, time
    from mindprint_trainer.interrupt import StopRequest, graceful_sigint, terminate_as_interrupt
    terminate_as_interrupt()
    if sys.argv[1] == "graceful":
        stop = StopRequest()
        with graceful_sigint(stop, announce=lambda m: print("announce:", m, flush=True)):
            print("ready", flush=True)
            while not stop.requested:
                time.sleep(0.01)
        print("stop requested, saving", flush=True)
        sys.exit(0)
    try:
        print("ready", flush=True)
        time.sleep(60)
    except KeyboardInterrupt:
        print("interrupted, saving", flush=True)
        sys.exit(130)
""")


@pytest.mark.parametrize("mode", ["graceful", "plain"])
def test_sigterm_acts_as_the_first_ctrl_c(mode: str) -> None:
    proc = subprocess.Popen([sys.executable, "-c", _SIGTERM_SCRIPT, mode], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    if mode == "graceful":  # a stop is requested at the next step, as for the first Ctrl-C
        assert proc.returncode == 0 and "announce: stopping after the current step" in out, out
        assert "stop requested, saving" in out
    else:  # outside the curriculum: KeyboardInterrupt, which the commands turn into save + exit 130
        assert proc.returncode == 130 and "interrupted, saving" in out, out


@pytest.mark.torch
def test_sigterm_during_sft_saves_the_adapter_and_exits_130(tmp_path: Path, tiny_model_dir: Path) -> None:
    (tmp_path / "sft.jsonl").write_text(SFT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    env.pop("MINDPRINT_BACKEND", None)
    proc = subprocess.Popen([*mindprint_exe(), "sft", "--backend", "pytorch", "--model", str(tiny_model_dir),
                             "--data", str(tmp_path / "sft.jsonl"), "--set", "sft.max_steps=100000",
                             "-o", str(tmp_path / "runs")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    deadline = time.monotonic() + 300
    metrics: list[Path] = []
    while time.monotonic() < deadline and proc.poll() is None:
        runs = tmp_path / "runs"
        metrics = [m for m in runs.glob("*/metrics.jsonl") if m.stat().st_size > 0] if runs.is_dir() else []
        if metrics:
            break
        time.sleep(0.1)
    assert metrics and proc.poll() is None, "no training step was logged"
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    saved = metrics[0].parent / "adapters" / "sft-interrupted"
    assert f"writing to {metrics[0].parent}" in " ".join(stderr.split())  # said before any work
    assert (saved / "adapter_model.safetensors").is_file(), stderr
    assert f"interrupted: the adapter trained so far is in {saved}" in " ".join(stderr.split())
    assert "Traceback" not in stderr


# -- --threads --------------------------------------------------------------------------------------------------

def _threads_in_child(env_extra: dict[str, str], threads: str) -> dict[str, object]:
    code = textwrap.dedent(f"""
        import json, os
        from mindprint_trainer.threads import THREAD_VARIABLES, apply_threads
        n = apply_threads({threads})
        import torch
        print(json.dumps({{"n": n, "torch": torch.get_num_threads(),
                           "env": {{k: os.environ.get(k) for k in THREAD_VARIABLES}}}}))
    """)
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**env, **env_extra}).stdout
    result: dict[str, object] = json.loads(out.strip().splitlines()[-1])
    return result


@pytest.mark.torch
def test_threads_size_torch_and_every_blas_pool() -> None:
    default = _threads_in_child({}, "None")
    assert default["n"] == default["torch"] == default_threads()
    forced = _threads_in_child({"OMP_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "2"}, "1")  # --threads wins
    assert forced["torch"] == 1 and set(dict(forced["env"]).values()) == {"1"}  # type: ignore[call-overload]


def test_default_threads_rule(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from mindprint_trainer import threads

    monkeypatch.setattr(threads, "_available_cpus", lambda: 8)
    monkeypatch.setattr(threads, "_smt_active", lambda: False)
    monkeypatch.setattr(threads, "_cgroup_quota", lambda: None)
    assert threads.default_threads() == 8
    monkeypatch.setattr(threads, "_smt_active", lambda: True)
    assert threads.default_threads() == 4
    monkeypatch.setattr(threads, "_cgroup_quota", lambda: 2)
    assert threads.default_threads() == 1
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text("150000 100000\n")
    monkeypatch.undo()
    assert threads._cgroup_quota(cpu_max) == 2
    cpu_max.write_text("max 100000\n")
    assert threads._cgroup_quota(cpu_max) is None


def test_threads_must_be_positive(tmp_path: Path) -> None:
    res = run_mindprint("generate", "--threads", "0", "--backend", "pytorch", "hi", cwd=tmp_path)
    assert res.returncode == 2
    assert "--threads: must be >= 1, got 0" in _one_error(res.stderr)


@pytest.mark.mlx
def test_threads_size_the_blas_mlx_loads() -> None:
    pytest.importorskip("mlx_lm")
    code = textwrap.dedent("""
        import ctypes
        from mindprint_trainer.threads import apply_threads
        apply_threads(1)
        from mindprint_interfaces import create_backend
        create_backend("mlx", device="cpu")
        from mindprint_mlx import blas
        lib = blas.loaded_library()
        print(ctypes.CDLL(lib).openblas_get_num_threads() if lib and "openblas" in lib else "no openblas")
    """)
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    last = out.stdout.strip().splitlines()[-1]
    if last == "no openblas":
        pytest.skip("MLX runs on its bundled reference BLAS here (single-threaded)")
    assert last == "1", out.stdout + out.stderr


def test_the_default_is_shared_by_nproc_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    from mindprint_trainer import threads

    for name in THREAD_VARIABLES:
        monkeypatch.setenv(name, "x")  # recorded, so the values apply_threads sets are undone after the test
        monkeypatch.delenv(name)
    monkeypatch.setattr(threads, "default_threads", lambda: 8)
    monkeypatch.delitem(sys.modules, "torch", raising=False)  # this process's torch pool is not touched here
    assert threads.apply_threads(None, processes=2) == 4
    assert os.environ["OMP_NUM_THREADS"] == os.environ["OPENBLAS_NUM_THREADS"] == "4"
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # the user's environment still wins
    assert threads.apply_threads(None, processes=2) == 3


def test_main_in_process_gives_the_callers_sigterm_handler_back(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    from mindprint_trainer import cli

    out = tmp_path / "merged"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    before = signal.getsignal(signal.SIGTERM)
    assert cli.main(["merge", "-b", "pytorch", "-m", str(tmp_path), "-a", str(tmp_path), str(out)]) == 2
    assert "pass --force" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGTERM) is before
