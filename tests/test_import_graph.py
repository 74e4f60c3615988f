"""No import cycles inside any package, and the layering between packages (read with ast, nothing imported).

Layering: interfaces depends on no other mindprint package; the pipeline and the backends depend on
interfaces only; the repository's tools never import the app; nothing imports the tests, and no
package imports the repository's tools.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.import_graph import cycles, describe, intra_package_edges, top_level_imports

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {
    "mindprint_interfaces": ROOT / "packages" / "mindprint-interfaces" / "src" / "mindprint_interfaces",
    "mindprint_torch": ROOT / "packages" / "mindprint-torch" / "src" / "mindprint_torch",
    "mindprint_mlx": ROOT / "packages" / "mindprint-mlx" / "src" / "mindprint_mlx",
    "mindprint_kit": ROOT / "packages" / "mindprint-kit" / "src" / "mindprint_kit",
    "mindprint_pipeline": ROOT / "packages" / "mindprint-pipeline" / "src" / "mindprint_pipeline",
    "mindprint_trainer": ROOT / "apps" / "trainer" / "src" / "mindprint_trainer",
    "tools": ROOT / "tools",
}
MINDPRINT = {name for name in PACKAGES if name.startswith("mindprint_")}
# What each package may import among the repository's own top-level packages.
ALLOWED = {
    "mindprint_interfaces": set(),
    "mindprint_kit": {"mindprint_interfaces"},
    "mindprint_torch": {"mindprint_interfaces", "mindprint_kit"},
    "mindprint_mlx": {"mindprint_interfaces", "mindprint_kit"},
    "mindprint_pipeline": {"mindprint_interfaces"},
    "mindprint_trainer": MINDPRINT - {"mindprint_trainer"},
    "tools": MINDPRINT - {"mindprint_trainer"},
}


def _cycle_report(package_dir: Path) -> str:
    edges = intra_package_edges(package_dir)
    return "\n".join(describe(component, edges, ROOT) for component in cycles(edges))


@pytest.mark.parametrize("package", list(PACKAGES))
def test_no_import_cycles(package: str) -> None:
    assert intra_package_edges(PACKAGES[package]), f"no imports found in {package}: wrong directory?"
    report = _cycle_report(PACKAGES[package])
    assert not report, f"import cycles in {package}:\n{report}"


@pytest.mark.parametrize("package", list(PACKAGES))
def test_layering(package: str) -> None:
    own = {*PACKAGES, "tests"}
    bad = sorted(
        f"{imp.path.relative_to(ROOT)}:{imp.line} imports {imp.target}"
        for imp in top_level_imports(PACKAGES[package])
        if (top := imp.target.split(".")[0]) in own and top != package and top not in ALLOWED[package]
    )
    assert not bad, f"{package} may import only {sorted(ALLOWED[package]) or 'no other mindprint package'}:\n" + \
        "\n".join(bad)


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "pkg"


def test_reports_a_cycle_through_a_lazy_and_a_type_checking_import(tmp_path: Path) -> None:
    package = _write(tmp_path, {
        "pkg/__init__.py": "from .a import run\n",
        "pkg/a.py": "from . import b\n\ndef run():\n    return b\n",
        "pkg/b.py": "def helper():\n    from .a import run\n    return run\n",
        "pkg/sub/__init__.py": "",
        "pkg/sub/c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..a import run\n",
        "pkg/sub/d.py": "from ..sub import c\nimport pkg.sub.c\n",
    })
    edges = intra_package_edges(package)
    # `from . import b` is an edge to the submodule b, not to the package __init__ (which would close a cycle)
    assert ("pkg.a", "pkg.b") in {(e.source, e.target) for e in edges}
    assert cycles(edges) == [["pkg.a", "pkg.b"]]
    report = describe(cycles(edges)[0], edges, tmp_path)
    assert "pkg/b.py:2  pkg.b -> pkg.a" in report and "pkg/a.py:1  pkg.a -> pkg.b" in report

    (package / "a.py").write_text("from . import b\nfrom .sub import c\n")
    (package / "sub" / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..a import b\n")
    edges = intra_package_edges(package)
    assert cycles(edges) == [["pkg.a", "pkg.b", "pkg.sub.c"]]
    report = describe(cycles(edges)[0], edges, tmp_path)
    plain, type_checking = report.split("imports under TYPE_CHECKING:")
    assert "pkg.sub.c -> pkg.a" in type_checking and "pkg.sub.c -> pkg.a" not in plain


def test_layering_sees_imports_of_other_packages(tmp_path: Path) -> None:
    package = _write(tmp_path, {
        "pkg/__init__.py": "import importlib\n\ndef f():\n    import tests.helpers\n"
                           "    return importlib.import_module('mindprint_trainer.cli')\n",
    })
    assert {imp.target for imp in top_level_imports(package)} >= {"tests.helpers", "mindprint_trainer.cli"}
