"""tools/release: every wheel builds, has the right dependency graph, installs alone and imports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_release_tool_passes() -> None:
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "release.py")], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "release check: OK" in out.stdout
    for dist in ("mindprint-interfaces", "mindprint-kit", "mindprint-pipeline", "mindprint-torch", "mindprint-mlx",
                 "mindprint-trainer"):
        assert f"{dist}: installed alone" in out.stdout


def test_graph_check_rejects_a_forbidden_dependency(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "tools"))
    import zipfile

    from release import check_dependencies

    wheel = tmp_path / "mindprint_pipeline-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("mindprint_pipeline/py.typed", "")
        zf.writestr("mindprint_pipeline-0.1.0.dist-info/METADATA",
                    "Metadata-Version: 2.4\nName: mindprint-pipeline\nVersion: 0.1.0\n"
                    "Requires-Dist: mindprint-interfaces<0.2,>=0.1\nRequires-Dist: torch>=2\n\n")
    problems = check_dependencies(wheel)
    assert problems == ["mindprint-pipeline: forbidden dependency 'torch>=2'"]


def _app_wheel(tmp_path: Path, requires: list[str]) -> Path:
    import zipfile

    wheel = tmp_path / "mindprint_trainer-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("mindprint_trainer/py.typed", "")
        zf.writestr("mindprint_trainer-0.1.0.dist-info/METADATA",
                    "Metadata-Version: 2.4\nName: mindprint-trainer\nVersion: 0.1.0\n"
                    + "".join(f"Requires-Dist: {r}\n" for r in requires) + "\n")
    return wheel


def test_the_app_extras_pull_their_backends(tmp_path: Path) -> None:
    """The README's `pip install 'mindprint-trainer[torch]'` / `[mlx]` / `[all]` hold for the built wheel."""
    sys.path.insert(0, str(ROOT / "tools"))
    from release import check_extras

    subprocess.run(["uv", "build", "--package", "mindprint-trainer", "--wheel", "-q", "-o", str(tmp_path / "dist")],
                   cwd=ROOT, check=True)
    (wheel,) = (tmp_path / "dist").glob("mindprint_trainer-*.whl")
    assert check_extras(wheel) == []
    broken = _app_wheel(tmp_path, ["mindprint-torch<0.2,>=0.1; extra == 'torch'",
                                   "mindprint-torch<0.2,>=0.1; extra == 'all'"])
    assert check_extras(broken) == ["mindprint-trainer: extra [mlx] does not require ['mindprint-mlx']",
                                    "mindprint-trainer: extra [all] does not require ['mindprint-mlx']"]
