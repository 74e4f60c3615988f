"""The installed command: malformed config / JSONL -> one clear `error:` line and a non-zero exit."""

from __future__ import annotations

from pathlib import Path

from tests.trainer.helpers import run_mindprint

GOOD = '{"instruction": "What is two plus two?", "output": "Four.", "topic_id": "math/basics/addition"}\n'


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: "), stderr
    assert "Traceback" not in stderr
    return lines[0]


def test_help_is_crisp() -> None:
    res = run_mindprint("--help")
    assert res.returncode == 0
    for command in ("train", "sft", "dpo", "generate", "eval", "merge", "convert-adapter", "doctor", "demo"):
        assert command in res.stdout
    assert len(res.stdout.splitlines()) < 45


def test_no_command_prints_help_and_fails() -> None:
    res = run_mindprint()
    assert res.returncode == 2
    assert "usage: mindprint" in res.stdout


def test_unknown_option() -> None:
    res = run_mindprint("sft", "--bogus")
    assert res.returncode == 2
    assert one_error_line(res.stderr).startswith("error: unrecognized arguments: --bogus")


def test_malformed_config_bad_enum(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("backend:\n  type: pytorch\n  device: tpu\n")
    res = run_mindprint("train", "--config", str(cfg))
    assert res.returncode == 2
    line = one_error_line(res.stderr)
    assert f"{cfg}: backend.device: must be one of auto, cpu, cuda, mps, gpu, metal, got 'tpu'" in line


def test_malformed_config_unknown_key(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("sft:\n  learning_rat: 0.001\n")
    res = run_mindprint("sft", "--config", str(cfg))
    assert res.returncode == 2
    assert 'unknown key "sft.learning_rat" (did you mean "learning_rate"?)' in one_error_line(res.stderr)


def test_malformed_config_invalid_yaml(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("backend: {type: pytorch\n")
    res = run_mindprint("train", "--config", str(cfg))
    assert res.returncode == 2
    assert "invalid YAML" in one_error_line(res.stderr)


def test_bad_backend_flag(tmp_path: Path) -> None:
    data = tmp_path / "sft.jsonl"
    data.write_text(GOOD)
    res = run_mindprint("sft", "--backend", "jaxx", "--data", str(data))
    assert res.returncode == 2
    line = one_error_line(res.stderr)
    assert "Unknown backend: jaxx. Known backends: mlx, pytorch" in line


def test_malformed_jsonl_single_bad_line(tmp_path: Path) -> None:
    data = tmp_path / "sft.jsonl"
    data.write_text(GOOD + '{"instruction": "Hi", "output": 3}\n' + GOOD)
    res = run_mindprint("sft", "--backend", "pytorch", "--data", str(data))
    assert res.returncode == 2
    line = one_error_line(res.stderr)
    assert f"{data}:2: field 'output': must be a string, got int" in line


def test_malformed_jsonl_invalid_json(tmp_path: Path) -> None:
    data = tmp_path / "sft.jsonl"
    data.write_text(GOOD + "{not json\n")
    res = run_mindprint("sft", "--backend", "pytorch", "--data", str(data))
    assert res.returncode == 2
    assert f"{data}:2: invalid JSON" in one_error_line(res.stderr)


def test_malformed_jsonl_lists_every_bad_line(tmp_path: Path) -> None:
    data = tmp_path / "prefs.jsonl"
    data.write_text('{"prompt": "a", "chosen": "x"}\n{"prompt": "b", "chosen": "y", "rejected": "y"}\n')
    res = run_mindprint("dpo", "--backend", "pytorch", "--data", str(data))
    assert res.returncode == 2
    assert res.stderr.startswith(f"error: 2 invalid records in {data}:")
    assert f"{data}:1: field 'rejected': missing" in res.stderr
    assert f"{data}:2: field 'rejected': is identical to chosen" in res.stderr
    assert "Traceback" not in res.stderr


def test_missing_data_file(tmp_path: Path) -> None:
    res = run_mindprint("sft", "--backend", "pytorch", "--data", str(tmp_path / "none.jsonl"))
    assert res.returncode == 2
    assert "file not found" in one_error_line(res.stderr)


def test_train_with_malformed_curriculum_fails_before_training(tmp_path: Path) -> None:
    (tmp_path / "sft_data.jsonl").write_text(GOOD + '{"question": "no answer"}\n')
    res = run_mindprint("train", "--backend", "pytorch", "--data-dir", str(tmp_path), "-o", str(tmp_path / "runs"))
    assert res.returncode == 2
    assert "sft_data.jsonl:2" in one_error_line(res.stderr)


def test_train_refused_by_its_config_leaves_no_run_directory(tmp_path: Path) -> None:
    (tmp_path / "sft_data.jsonl").write_text(GOOD)
    res = run_mindprint("train", "--backend", "pytorch", "--data-dir", str(tmp_path), "-o", str(tmp_path / "runs"),
                        "--set", "data.markers_file=missing.json")
    assert res.returncode == 2
    assert "data.markers_file" in one_error_line(res.stderr)
    assert list((tmp_path / "runs").iterdir()) == []  # refused before any work: no empty run directory


def test_no_backend_chosen(tmp_path: Path) -> None:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("backend:\n  type: null\n")
    data = tmp_path / "sft.jsonl"
    data.write_text(GOOD)
    res = run_mindprint("sft", "--config", str(cfg), "--data", str(data))
    assert res.returncode == 2
    assert "no backend chosen: pass --backend pytorch|mlx, set MINDPRINT_BACKEND" in one_error_line(res.stderr)


def test_env_backend_is_validated(tmp_path: Path) -> None:
    data = tmp_path / "sft.jsonl"
    data.write_text(GOOD)
    res = run_mindprint("sft", "--data", str(data), env={"MINDPRINT_BACKEND": "jax"})
    assert res.returncode == 2
    assert "Unknown backend: jax. Known backends:" in one_error_line(res.stderr)


def test_missing_backend_names_the_extra(tmp_path: Path) -> None:
    # Hide the installed backends' entry points by pointing the registry at nothing: run in a
    # subprocess that unregisters them, as a user without the extra would see it.
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from mindprint_interfaces import BackendRegistry\n"
        "BackendRegistry._load_entry_points()\n"
        "BackendRegistry.unregister('mlx')\n"
        "from mindprint_trainer.cli import main\n"
        f"sys.exit(main(['generate', '--backend', 'mlx', '--model', {str(tmp_path)!r}, 'hi']))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2
    line = one_error_line(proc.stderr)
    assert "mlx is not installed" in line
    assert "pip install 'mindprint-trainer[mlx]'" in line


def test_bench_outside_a_checkout_says_where_to_run(tmp_path: Path) -> None:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "mindprint_trainer", "bench", "--smoke"], cwd=tmp_path,
                         capture_output=True, text=True)
    assert out.returncode == 2
    assert "mindprint bench runs from a mindprint source checkout" in out.stderr


def test_bench_runs_tools_bench_from_the_checkout_root_and_passes_its_exit_code() -> None:
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-m", "mindprint_trainer", "bench", "--steps", "0"], cwd=root / "apps",
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1  # tools/bench's own usage failure, from a subdirectory of the checkout
    assert "--steps must be >= 1" in out.stderr
    out = subprocess.run([sys.executable, "-m", "mindprint_trainer", "bench", "--help"], cwd=root,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.startswith("usage: mindprint bench")
