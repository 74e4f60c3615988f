"""Every failure class the fault probe found: one `error: <where>: <what>` line, exit 2 or 1, no traceback (#20).

The CLI runs in-process (``cli.main``, stderr captured) on the one session-wide tiny model, so the whole file
runs in the fast suite; one case runs the installed command in a child process, to prove that what reaches a
terminal is the one line too (the same ``main`` is behind both). ``tools/fault_probe.py`` runs the same classes
and the kill/divergence cases end to end on both backends."""

from __future__ import annotations

import errno
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from mindprint_interfaces import AdapterConfig
from mindprint_kit.adapter_files import write_adapter
from tests.trainer.helpers import Result, run_mindprint

from .test_cli_errors import one_error_line

SFT = '{"instruction": "What is two plus two?", "output": "Four.", "topic_id": "math/basics/addition"}\n'
BACKENDS = [pytest.param("pytorch", marks=pytest.mark.torch), pytest.param("mlx", marks=pytest.mark.mlx)]


def error_line(stderr: str) -> str:
    """The one ``error:`` line, last on stderr after any progress notes, with no traceback anywhere."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], stderr
    return errors[0]


def _model_copy(tiny_model_dir: Path, tmp_path: Path) -> Path:
    out = tmp_path / "model"
    shutil.copytree(tiny_model_dir, out)
    return out


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_pickle_only_model_dir_is_refused(run_cli: Callable[..., Result], backend: str, tiny_model_dir: Path, tmp_path: Path) -> None:
    model = _model_copy(tiny_model_dir, tmp_path)
    (model / "model.safetensors").unlink()
    (model / "pytorch_model.bin").write_bytes(b"not loaded: mindprint never unpickles")
    res = run_cli("generate", "hi", "-b", backend, "-m", str(model))
    assert res.returncode == 2
    line = error_line(res.stderr)
    assert str(model) in line and "pickle" in line and "pytorch_model.bin" in line


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_remote_code_model_is_refused(run_cli: Callable[..., Result], backend: str, tiny_model_dir: Path, tmp_path: Path) -> None:
    model = _model_copy(tiny_model_dir, tmp_path)
    config = json.loads((model / "config.json").read_text())
    config.update(model_type="my_custom_llm", auto_map={"AutoModelForCausalLM": "modeling_custom.CustomLM"})
    (model / "config.json").write_text(json.dumps(config))
    (model / "modeling_custom.py").write_text("raise SystemExit('remote code ran')\n")
    res = run_cli("generate", "hi", "-b", backend, "-m", str(model))
    assert res.returncode == 2
    line = error_line(res.stderr)
    assert "remote code" in line and "my_custom_llm" in line


@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan"])
def test_non_finite_numbers_are_config_errors(run_cli: Callable[..., Result], value: str, tmp_path: Path) -> None:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"sft:\n  num_epochs: {value}\n")
    res = run_cli("sft", "--config", str(cfg), "-o", str(tmp_path / "runs"))
    assert res.returncode == 2
    assert "sft.num_epochs: must be a finite number" in error_line(res.stderr)


@pytest.mark.torch
def test_unknown_target_modules_on_torch(run_cli: Callable[..., Result], tiny_model_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "sft.jsonl"
    data.write_text(SFT)
    res = run_cli("sft", "-b", "pytorch", "-m", str(tiny_model_dir), "-d", str(data), "-o", str(tmp_path / "r"),
                        "--set", "sft.target_modules=[nonexistent]", "--set", "sft.max_steps=1")
    assert res.returncode == 2
    line = error_line(res.stderr)
    assert "target module 'nonexistent' not in this llama's decoder layers" in line and "q_proj" in line


def test_output_dir_pointing_at_a_file(run_cli: Callable[..., Result], tiny_model_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "sft.jsonl"
    data.write_text(SFT)
    target = tmp_path / "a-file"
    target.write_text("x")
    res = run_cli("sft", "-m", str(tiny_model_dir), "-d", str(data), "-o", str(target))
    assert res.returncode == 2
    assert f"output directory: {target} is a file" in error_line(res.stderr)


def test_disk_full_is_one_line_with_exit_1(tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    # ENOSPC cannot be produced on this machine's disk: the run-directory write raises it instead
    from mindprint_trainer import cli, rundir

    def full(self: rundir.RunDirectory, yaml_text: str) -> Path:
        raise OSError(errno.ENOSPC, "No space left on device", str(self.path / rundir.CONFIG))

    monkeypatch.setattr(rundir.RunDirectory, "write_config", full)
    data = tmp_path / "sft.jsonl"
    data.write_text(SFT)
    code = cli.main(["sft", "-m", str(tiny_model_dir), "-d", str(data), "-o", str(tmp_path / "runs"),
                     "--set", "sft.max_steps=1"])
    err = capsys.readouterr().err
    assert code == 1
    line = error_line(err)
    assert "config.yaml: no space left on device" in line and "--resume" in line


def test_an_unexpected_exception_is_one_line_without_debug(monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    from mindprint_trainer import cli, commands

    def boom(args: object) -> int:
        raise KeyError("something internal")

    monkeypatch.setattr(commands, "dispatch", boom)
    assert cli.main(["doctor"]) == 2  # a LookupError
    assert one_error_line(capsys.readouterr().err).startswith("error: KeyError:")
    monkeypatch.setattr(commands, "dispatch", lambda args: 1 / 0)
    assert cli.main(["doctor"]) == 1
    assert "internal error: ZeroDivisionError" in one_error_line(capsys.readouterr().err)
    with pytest.raises(ZeroDivisionError):
        cli.main(["--debug", "doctor"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_merging_a_nan_adapter_is_refused(run_cli: Callable[..., Result], backend: str, tiny_model_dir: Path, tmp_path: Path) -> None:
    cfg = json.loads((tiny_model_dir / "config.json").read_text())
    hidden = cfg["hidden_size"]
    rng = np.random.default_rng(0)
    weights = {(layer, "self_attn.q_proj"): (rng.normal(size=(4, hidden)).astype(np.float32),
                                             np.full((hidden, 4), np.nan, np.float32))
               for layer in range(cfg["num_hidden_layers"])}
    adapter = write_adapter(tmp_path / "nan", AdapterConfig(r=4, alpha=8, target_modules=("q_proj",)), weights)
    res = run_cli("merge", "-b", backend, "-m", str(tiny_model_dir), "-a", str(adapter),
                        str(tmp_path / "merged"))
    assert res.returncode == 2
    line = error_line(res.stderr)
    assert str(adapter) in line and "non-finite values" in line
    assert not (tmp_path / "merged").exists()


@pytest.mark.mlx
def test_truncation_is_reported_in_the_cli_and_summary(run_cli: Callable[..., Result], tiny_model_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "sft.jsonl"
    long = json.dumps({"instruction": "Tell me a story.", "output": "once upon a time " * 6000})
    data.write_text(SFT + long + "\n")
    res = run_cli("sft", "-b", "mlx", "-m", str(tiny_model_dir), "-d", str(data), "-o", str(tmp_path / "runs"),
                        "--set", "sft.max_length=64", "--set", "sft.max_steps=1")
    assert res.returncode == 0, res.stderr
    expected = f"{data}: 1 record longer than max_length=64 were truncated; longest: {data}:2, 102016 characters"
    assert expected in " ".join(res.stderr.split())
    [run] = list((tmp_path / "runs").iterdir())
    assert "1 record longer than max_length=64" in (run / "summary.md").read_text()


@pytest.mark.mlx
def test_a_refused_run_leaves_no_run_directory(run_cli: Callable[..., Result], tiny_model_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "sft.jsonl"
    data.write_text(SFT)
    res = run_cli("sft", "-b", "mlx", "-m", str(tiny_model_dir), "-d", str(data), "-o", str(tmp_path / "runs"),
                        "--set", "sft.max_length=2", "--set", "sft.truncation=error")
    assert res.returncode == 2
    assert "max_length=2" in res.stderr
    assert list((tmp_path / "runs").iterdir()) == []


@pytest.mark.mlx
def test_the_installed_command_prints_the_one_line_too(tiny_model_dir: Path, tmp_path: Path) -> None:
    """A real child process: what reaches the terminal is the one line (no traceback from import or exit)."""
    model = _model_copy(tiny_model_dir, tmp_path)
    (model / "model.safetensors").unlink()
    (model / "pytorch_model.bin").write_bytes(b"not loaded: mindprint never unpickles")
    res = run_mindprint("generate", "hi", "-b", "mlx", "-m", str(model), cwd=tmp_path)  # mlx: the quicker import
    assert res.returncode == 2
    line = error_line(res.stderr)
    assert str(model) in line and "pickle" in line and "pytorch_model.bin" in line


def test_a_library_io_error_for_a_full_disk_is_the_disk_full_line() -> None:
    """safetensors writes through its own I/O layer: a full disk is a SafetensorError, not an OSError (found by
    tools/fault_probe.py on a nearly full tmpfs); it gets the disk-full line, not "internal error"."""
    from safetensors import SafetensorError

    from mindprint_trainer.failures import describe

    code, line = describe(SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)"))
    assert code == 1
    assert line.startswith("file system: no space left on device;") and "--resume" in line
    assert describe(SafetensorError("Error while deserializing header: HeaderTooLarge"))[1].startswith("internal")
