"""docs/cli.md is the parser's own help, current (regenerate: uv run python -m mindprint_trainer.cli_reference
--write docs/cli.md)."""

from __future__ import annotations

from pathlib import Path

from mindprint_trainer.cli import build_parser_and_commands
from mindprint_trainer.cli_reference import render

ROOT = Path(__file__).resolve().parents[2]


def test_docs_cli_md_is_current() -> None:
    assert (ROOT / "docs" / "cli.md").read_text(encoding="utf-8") == render(), (
        "docs/cli.md is stale: uv run python -m mindprint_trainer.cli_reference --write docs/cli.md")


def test_every_subcommand_and_option_is_in_the_reference() -> None:
    text = render()
    _, subs = build_parser_and_commands()
    assert len(subs) >= 15
    for name, sub in subs.items():
        assert sub.description, name  # each command says what it does
        assert f"## mindprint {name}\n" in text
        for action in sub._actions:  # noqa: SLF001
            for flag in action.option_strings:
                assert flag in text, (name, flag)


def test_the_readme_links_the_reference() -> None:
    assert "(docs/cli.md)" in (ROOT / "README.md").read_text(encoding="utf-8")
