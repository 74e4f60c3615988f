"""The ``mindprint`` command line.

Exit codes: 0 ok, 1 runtime failure (training failed, merge not verified ...), 2 usage / config /
data / missing package, 130 interrupted (Ctrl-C or SIGTERM; a resumable checkpoint is left in place).
Every :class:`~mindprint_interfaces.MindprintError` is printed as ``error: ...`` without a
traceback (``--debug`` shows it).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from mindprint_interfaces import (
    BackendNotFoundError,
    ConfigError,
    DataValidationError,
    DeviceUnavailableError,
    MindprintError,
)

from . import __version__

# Exit 2: the user can fix it by changing the command, the config, the data or the installation
# (ConfigError, DataValidationError, AdapterFormatError and CheckpointError are ValueErrors,
# BackendNotFoundError is a LookupError). Exit 1: the work itself failed.
USAGE_ERRORS: tuple[type[BaseException], ...] = (ConfigError, DataValidationError, BackendNotFoundError,
                                                 DeviceUnavailableError, ValueError, LookupError)

EPILOG = """\
examples:
  mindprint demo                          train the bundled SmolLM2 on the bundled curriculum (CPU, minutes)
  mindprint demo --backend mlx            the same on MLX
  mindprint train --config configs/training_pipeline.yaml
  mindprint sft --model DIR --data sft.jsonl --set sft.max_steps=20
  mindprint generate "What is photosynthesis?" --adapter runs/.../adapters/sft
  mindprint doctor                        what is installed, what is missing, how to fix it

backend choice: --backend > MINDPRINT_BACKEND > backend.type in the config file.
"""


class _Parser(argparse.ArgumentParser):
    """argparse with the one-line ``error:`` style and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"error: {message} (see: {self.prog} --help)\n")
        raise SystemExit(2)


def _backend_choices() -> str:
    """The registered backends for the help text (entry points are read, no backend is imported)."""
    from mindprint_interfaces import BackendRegistry

    return " | ".join(BackendRegistry.preference_order()) or "any registered backend"


def _display(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("progress output (stderr; results stay on stdout)")
    g.add_argument("--quiet", action="store_true", help="only errors and the final summary")
    g.add_argument("--log-format", choices=("auto", "rich", "plain", "json"), default="auto",
                   help="auto (rich on a terminal, else plain) | rich | plain (timestamped lines) | "
                        "json (one object per line, see docs/progress.md)")


def _resume(p: argparse.ArgumentParser) -> None:
    p.add_argument("--resume", metavar="PATH",
                   help="continue from a checkpoint-<step>/ (or the newest in a run directory), written by save_steps "
                        "on any backend")


def _common(p: argparse.ArgumentParser, *, config: bool = True, model: bool = True) -> None:
    _display(p)
    g = p.add_argument_group("backend and config")
    if config:
        g.add_argument("-c", "--config", metavar="YAML", help="config file (default: the bundled defaults)")
        g.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config key, e.g. --set sft.learning_rate=1e-4 (repeatable)")
    g.add_argument("-b", "--backend", help=f"{_backend_choices()} (overrides MINDPRINT_BACKEND and the config file)")
    g.add_argument("--device", help="auto | cpu | cuda | mps | gpu")
    g.add_argument("--dtype", help="auto | float32 | float16 | bfloat16")
    g.add_argument("--threads", type=int, metavar="N",
                   help="CPU threads of torch and the BLAS/OpenMP pools (default: one per available physical core)")
    if model:
        g.add_argument("-m", "--model", metavar="PATH", help='model directory ("smollm2" = bundled SmolLM2-135M-Instruct)')
        g.add_argument("-a", "--adapter", metavar="DIR", help="adapter to load on top of the model (PEFT or mlx-lm)")
        g.add_argument("--quantize", type=int, choices=(4, 8), metavar="BITS",
                       help="QLoRA: load the base quantized to 4 or 8 bits (model.quantization)")


def _output(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output-dir", metavar="DIR", help="where the run directory is created (default: runs/)")


def _nproc(p: argparse.ArgumentParser) -> None:
    p.add_argument("--nproc", type=int, default=1, metavar="N",
                   help="data parallel on N local processes, under the backend's own launcher "
                        "(torchrun for pytorch, mlx.launch --backend ring for mlx)")


def _seed(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, metavar="N",
                   help="seed of the initial adapter, the data order and dropout, the same on every backend "
                        "(sets backend.seed and the training sections' seed)")


def _report_to(p: argparse.ArgumentParser) -> None:
    p.add_argument("--report-to", action="append", metavar="NAMES",
                   help="experiment trackers: tensorboard, mlflow, wandb (comma-separated or repeated; none = off; "
                        "overrides report_to in the config)")


class _Commands:
    """The subcommands: argparse's subparsers action, remembering each command's parser, its help also its
    description (so ``mindprint <command> --help`` says what the command does, and docs/cli.md can list it)."""

    def __init__(self, action: Any) -> None:
        self.action = action
        self.parsers: dict[str, argparse.ArgumentParser] = {}

    def add_parser(self, name: str, *, help: str, **kwargs: Any) -> argparse.ArgumentParser:  # noqa: A002
        kwargs.setdefault("description", help)
        parser: argparse.ArgumentParser = self.action.add_parser(name, help=help, **kwargs)
        self.parsers[name] = parser
        return parser


def build_parser() -> argparse.ArgumentParser:
    return build_parser_and_commands()[0]


def build_parser_and_commands() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The ``mindprint`` parser and its subcommands' parsers by name (in the order ``--help`` lists them)."""
    parser = _Parser(
        prog="mindprint",
        description="Curriculum LoRA fine-tuning (SFT + DPO) on PyTorch or MLX.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"mindprint {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = _Commands(parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser))

    p = sub.add_parser("train", help="run the curriculum (SFT -> eval -> DPO per topic)")
    _common(p)
    _output(p)
    _report_to(p)
    _nproc(p)
    _seed(p)
    p.add_argument("--data-dir", metavar="DIR", help="directory with sft_data.jsonl / preference_data.jsonl")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run from its checkpoint")

    p = sub.add_parser("sft", help="supervised fine-tuning on one JSONL file")
    _common(p)
    _output(p)
    _report_to(p)
    _nproc(p)
    _seed(p)
    p.add_argument("-d", "--data", metavar="JSONL", help="SFT records (default: data.dir/data.sft_file)")
    _resume(p)

    p = sub.add_parser("dpo", help="preference optimisation on one JSONL file")
    _common(p)
    _output(p)
    _report_to(p)
    _nproc(p)
    _seed(p)
    p.add_argument("-d", "--data", metavar="JSONL", help="preference pairs (default: data.dir/data.preference_file)")
    _resume(p)

    for name, what, data in (("orpo", "ORPO (odds-ratio preference optimisation, no reference, no SFT needed)",
                              "preference pairs"),
                             ("cpo", "CPO / SimPO (reference-free preference optimisation)", "preference pairs"),
                             ("kto", "KTO on thumbs-up/down records", "{prompt, completion, label} records or "
                                                                     "preference pairs (unpaired)")):
        p = sub.add_parser(name, help=f"{what} on one JSONL file")
        _common(p)
        _output(p)
        _nproc(p)
        _seed(p)
        p.add_argument("-d", "--data", metavar="JSONL", help=f"{data} (default: data.dir/data.preference_file)")
        _resume(p)

    p = sub.add_parser("generate", help="generate an answer")
    _common(p)
    p.add_argument("prompt", nargs="+", help="the prompt (a user message; --raw for plain text; - reads stdin)")
    p.add_argument("--raw", action="store_true", help="do not apply the chat template")
    p.add_argument("--max-new-tokens", type=int)
    p.add_argument("--temperature", type=float)

    p = sub.add_parser("eval", help="score a model on questions: accuracy (ROUGE-L) and voice")
    _common(p)
    _output(p)
    p.add_argument("-d", "--data", metavar="JSONL", help="question/answer records (default: the SFT file)")
    p.add_argument("--markers", metavar="FILE", help="voice markers (default: data.markers_file)")

    p = sub.add_parser("merge", help="merge an adapter into the model (verified) and save it")
    _common(p)
    p.add_argument("output", metavar="OUT_DIR", help="where the merged model is written")
    p.add_argument("--force", action="store_true", help="replace OUT_DIR when it exists and is not empty")

    p = sub.add_parser("convert-adapter", help="convert an adapter between PEFT and mlx-lm layouts")
    p.add_argument("src", metavar="SRC_DIR")
    p.add_argument("dst", metavar="DST_DIR")
    p.add_argument("--to", required=True, choices=("peft", "mlx"), help="target layout")
    p.add_argument("-b", "--backend", help="which installed backend package converts (default: any)")

    p = sub.add_parser("doctor", help="installed packages, backends, devices; what is missing and how to fix it")
    p.add_argument("--no-speed", action="store_true", help="skip the MLX CPU matmul benchmark")

    p = sub.add_parser("demo", help="train the bundled SmolLM2 on the bundled curriculum and show before/after")
    _common(p, config=False, model=False)
    _output(p)
    _report_to(p)
    p.add_argument("--quick", action="store_true",
                   help="one quiz question per topic, 2 SFT epochs without replay + 5 DPO steps per topic instead "
                        "of 3 + 10: a smoke run that still shows the voice arriving (docs/demo.md has the measured "
                        "times)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a demo setting, e.g. --set pipeline.preference_method=orpo (repeatable)")

    from . import plan

    plan.add_parser(sub)

    p = sub.add_parser("bench", help="benchmark both backends against raw TRL / mlx-lm (from a source checkout)",
                       add_help=False)
    p.add_argument("bench_args", nargs=argparse.REMAINDER, help="arguments for tools/bench (see: mindprint bench --help)")

    p = sub.add_parser("export", help="write a verified GGUF file (llama.cpp / Ollama) from a model, adapter or run")
    _common(p, model=False)
    p.add_argument("src", metavar="RUN_OR_MODEL_DIR", help="a merged model directory, a model directory (with "
                   "--adapter) or a run directory of mindprint sft/dpo")
    p.add_argument("out", metavar="OUT.gguf", help="the GGUF file to write (atomically, after verification)")
    p.add_argument("-a", "--adapter", metavar="DIR", help="adapter to merge first (default for a run: adapters/dpo "
                   "or adapters/sft)")
    p.add_argument("-q", "--quant", default="f16", help="f32 | f16 | bf16 | q8_0 | q4_0 (default f16)")
    p.add_argument("--ollama", action="store_true", help="also write an Ollama Modelfile next to OUT")

    p = sub.add_parser("chat", help="chat with a model (multi-turn, streamed); /reset, /exit; reads stdin in a pipe")
    _common(p)
    p.add_argument("--system", metavar="TEXT", help="a system message at the start of every conversation")
    p.add_argument("--max-new-tokens", type=int)
    p.add_argument("--temperature", type=float)
    return parser, sub.parsers


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["bench"]:  # everything after "bench" belongs to tools/bench, including --help
        try:
            return _bench(args_list[1:])
        except MindprintError as exc:
            _print_error(exc)
            return 2
    parser = build_parser()
    args = parser.parse_args(args_list)
    if args.command is None:
        parser.print_help()
        return 2
    debug = bool(args.debug or os.environ.get("MINDPRINT_DEBUG"))
    if not debug:
        _quiet_libraries()
    _configure_reporting(args)
    previous_sigterm = None
    try:
        from .threads import apply_threads

        apply_threads(getattr(args, "threads", None), processes=max(1, getattr(args, "nproc", 1)))  # before any
        # backend library loads its thread pools; --nproc's processes inherit the variables
        from .interrupt import terminate_as_interrupt

        previous_sigterm = terminate_as_interrupt()  # SIGTERM = the first Ctrl-C: the run saves and exits 130
        if args.command == "plan":
            from . import plan as plan_command

            return plan_command.run(args)
        from .commands import dispatch

        if getattr(args, "nproc", 1) > 1 or getattr(args, "nproc", 1) < 1:
            return _launch(args, args_list)
        from . import launch

        if launch.in_launched_process() and launch.launched_rank() > 0 and hasattr(args, "output_dir"):
            args.output_dir = launch.secondary_rank_output_dir(quiet=not debug)  # rank 0 owns the run directory
        return dispatch(args)
    except KeyboardInterrupt:
        sys.stderr.write("\ninterrupted\n")
        return 130
    except MindprintError as exc:
        if debug:
            raise
        _print_error(exc)
        return 2 if isinstance(exc, USAGE_ERRORS) or getattr(exc, "usage", False) else 1
    except Exception as exc:  # a library's or the OS's error: still one line, never a traceback (#20)
        if debug:
            raise
        from .failures import describe

        code, message = describe(exc)
        _error_line(message)
        return code
    finally:
        if previous_sigterm is not None:  # main() called in-process (tests, embedding): the caller's handler back
            import signal

            signal.signal(signal.SIGTERM, previous_sigterm)
        from . import reporting

        reporting.shutdown()  # no phase listener outlives the command


def _bench(argv: Sequence[str]) -> int:
    """``mindprint bench``: the benchmark harness lives in the repository's ``tools/bench`` (not in the wheel),
    because it drives the raw peer libraries (TRL, mlx-lm, mlx-lm-lora) that users need not install. It runs as
    ``python -m tools.bench`` from the checkout root, in its own process: the app never imports the tools."""
    import subprocess
    from pathlib import Path

    for root in (Path.cwd(), *Path.cwd().parents):
        if (root / "tools" / "bench" / "__init__.py").is_file():
            return subprocess.run([sys.executable, "-m", "tools.bench", *argv], cwd=root, check=False).returncode
    raise ConfigError("mindprint bench runs from a mindprint source checkout (it needs tools/bench and the `bench` "
                      "dependency group): cd into the repository and run `uv run --group bench mindprint bench`",
                      key="bench")


def _launch(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """``--nproc N``: re-run this command under the backend's launcher (see :mod:`.launch`)."""
    from . import launch
    from .args_config import config_from_args

    if args.nproc < 1:
        raise ConfigError(f"--nproc: must be >= 1, got {args.nproc}", key="nproc")
    if launch.in_launched_process():
        raise ConfigError("--nproc: this process was already started by a launcher; drop --nproc", key="nproc")
    backend = config_from_args(args).backend.type
    if backend is None:
        raise ConfigError(f"--nproc: choose a backend (--backend {_backend_choices()}, MINDPRINT_BACKEND or "
                          "backend.type)", key="backend.type")
    return launch.relaunch(backend, args.nproc, argv)


def _quiet_libraries() -> None:
    """Progress and metrics come from mindprint's own display; silence the libraries' chatter."""
    import logging
    import warnings

    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("WANDB_SILENT", "true")
    for category in (FutureWarning, UserWarning, DeprecationWarning):
        warnings.filterwarnings("ignore", category=category)
    for name in ("transformers", "trl", "peft", "datasets", "accelerate", "mlflow", "alembic", "bitsandbytes"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _configure_reporting(args: argparse.Namespace) -> None:
    """``--quiet`` / ``--log-format`` (secondary ranks of a data-parallel run report nothing)."""
    from . import launch, reporting

    quiet = bool(getattr(args, "quiet", False)) or (launch.in_launched_process() and launch.launched_rank() > 0)
    reporting.configure(getattr(args, "log_format", "auto"), quiet=quiet)


def _error_line(message: str) -> None:
    """``error: ...`` on stderr, or a JSON ``error`` event under ``--log-format json``."""
    from . import reporting

    current = reporting.current()
    if isinstance(current, reporting.JsonReporter):
        current.emit("error", message=message)
    else:
        sys.stderr.write(f"error: {message}\n")


def _print_error(exc: MindprintError) -> None:
    if isinstance(exc, DataValidationError) and len(exc.issues) > 1:
        lines = [issue.format(exc.source) for issue in exc.issues]
        from . import reporting

        if isinstance(reporting.current(), reporting.JsonReporter):
            _error_line(f"{len(lines)} invalid records in {exc.source}")
            for line in lines[:20]:
                _error_line(line)
            return
        sys.stderr.write(f"error: {len(lines)} invalid records in {exc.source}:\n")
        for line in lines[:20]:
            sys.stderr.write(f"  {line}\n")
        if len(lines) > 20:
            sys.stderr.write(f"  ... and {len(lines) - 20} more\n")
        return
    message = " ".join(str(exc).split("\n"))
    _error_line(message)


if __name__ == "__main__":
    sys.exit(main())
