"""docs/cli.md is the parser's own help, current (regenerate: uv run python -m mindprint_trainer.cli_reference
--write docs/cli.md)."""

from __future__ import annotations

from pathlib import Path

from mindprint_trainer.cli import build_parser
from mindprint_trainer.cli_reference import _subcommands, render

ROOT = Path(__file__).resolve().parents[2]


def test_docs_cli_md_is_current() -> None:
    assert (ROOT / "docs" / "cli.md").read_text(encoding="utf-8") == render(), (
        "docs/cli.md is stale: uv run python -m mindprint_trainer.cli_reference --write docs/cli.md")


def test_every_subcommand_and_option_is_in_the_reference() -> None:
    text = render()
    subs = _subcommands(build_parser())
    assert len(subs) >= 15
    for name, _, sub in subs:
        assert f"## mindprint {name}\n" in text
        for action in sub._actions:  # noqa: SLF001
            for flag in action.option_strings:
                assert flag in text, (name, flag)


def test_the_readme_links_the_reference() -> None:
    assert "(docs/cli.md)" in (ROOT / "README.md").read_text(encoding="utf-8")
