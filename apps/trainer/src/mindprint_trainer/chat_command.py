"""``mindprint chat``: a multi-turn conversation with a model (and adapter), answers streamed as generated.

Reads one user message per line from stdin; ``/reset`` starts a new conversation, ``/exit`` (or end of input)
quits. In a terminal it shows a ``>`` prompt; in a pipe it prints exactly one answer line per message, so it
can be scripted and tested. The conversation is rendered with the model's chat template exactly as
training renders prompts (the Model's ``stream``/``generate`` share that encoding).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO

from .args_config import config_from_args, generation_from_args
from .backend_setup import load_model, make_backend


def chat_loop(model: Any, generation: Any, stdin: TextIO, stdout: TextIO, *, system: str | None = None,
              interactive: bool = False) -> int:
    """Run the conversation; returns the number of answers given."""
    history: list[dict[str, str]] = []
    answers = 0

    def start() -> None:
        history.clear()
        if system:
            history.append({"role": "system", "content": system})

    start()
    while True:
        if interactive:
            stdout.write("> ")
            stdout.flush()
        line = stdin.readline()
        if not line:
            break
        text = line.rstrip("\n").strip()
        if not text:
            continue
        if text == "/exit":
            break
        if text == "/reset":
            start()
            if interactive:
                stdout.write("(new conversation)\n")
            continue
        history.append({"role": "user", "content": text})
        pieces: list[str] = []
        for piece in model.stream(list(history), generation):
            pieces.append(piece)
            stdout.write(piece.replace("\n", " ") if not interactive else piece)
            stdout.flush()
        stdout.write("\n")
        stdout.flush()
        history.append({"role": "assistant", "content": "".join(pieces).strip()})
        answers += 1
    return answers


def cmd_chat(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    generation = generation_from_args(cfg, args)
    backend = make_backend(cfg)
    model = load_model(backend, cfg)
    interactive = sys.stdin.isatty()
    if interactive:
        sys.stdout.write(f"chatting with {cfg.model.path} on {backend.name}; /reset starts over, /exit quits\n")
    chat_loop(model, generation, sys.stdin, sys.stdout, system=args.system, interactive=interactive)
    return 0
