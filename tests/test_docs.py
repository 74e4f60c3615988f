"""docs/architecture.md names only what the tree has: every path it cites exists, and the table of
backend files holds for both backends (a walk-through that names a missing file fails here)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "architecture.md"
BACKENDS = (ROOT / "packages/mindprint-torch/src/mindprint_torch", ROOT / "packages/mindprint-mlx/src/mindprint_mlx")


def _exists(cited: str) -> bool:
    if (ROOT / cited).exists():
        return True
    # a module path inside a package: mindprint_mlx/lean_forward.py
    return any((src / cited).exists() for src in [*ROOT.glob("packages/*/src"), *ROOT.glob("apps/*/src")])


def test_every_cited_path_exists() -> None:
    text = DOC.read_text(encoding="utf-8")
    cited = set(re.findall(r"`((?:packages|apps|tools|tests|docs)/[^`*<>\s]+?)`", text))
    cited |= set(re.findall(r"`(mindprint_\w+/[\w/]+\.py)`", text))
    assert len(cited) > 10, "the walk-throughs should cite files"
    missing = sorted(p for p in cited if not _exists(p))
    assert not missing, f"docs/architecture.md cites paths that do not exist: {missing}"


def test_both_backends_have_the_files_of_the_shared_shape() -> None:
    text = DOC.read_text(encoding="utf-8")
    table = text.split("## The two backends share one shape", 1)[1].split("\n## ", 1)[0]
    names = {n for row in re.findall(r"^\| (.+?) \|", table, flags=re.M) for n in re.findall(r"`([\w/]+(?:\.py|/))`", row)}
    assert {"backend.py", "model.py", "training.py", "registration.py", "_compat/"} <= names
    for backend in BACKENDS:
        missing = sorted(n for n in names if not (backend / n.rstrip("/")).exists())
        assert not missing, f"{backend.name} lacks {missing} listed as shared shape in docs/architecture.md"


def test_each_package_has_readme_changelog_and_py_typed() -> None:
    for pyproject in [*ROOT.glob("packages/*/pyproject.toml"), *ROOT.glob("apps/*/pyproject.toml")]:
        package = pyproject.parent
        assert (package / "README.md").is_file() and (package / "CHANGELOG.md").is_file(), package
        assert list(package.glob("src/*/py.typed")), f"{package}: no py.typed"
