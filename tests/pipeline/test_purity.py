"""mindprint-pipeline depends on mindprint-interfaces only and never imports a tensor library."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PKG = ROOT / "packages" / "mindprint-pipeline"
FORBIDDEN = ("torch", "mlx", "mlx_lm", "transformers", "numpy", "peft", "trl", "datasets", "safetensors",
             "mindprint_torch", "mindprint_mlx")


def test_no_forbidden_imports_in_source() -> None:
    offenders = []
    files = sorted((PKG / "src" / "mindprint_pipeline").rglob("*.py"))
    assert files
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
                    "import_module", "__import__"):
                names = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
            offenders += [f"{path.name}:{getattr(node, 'lineno', 0)} {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    assert offenders == []


def test_import_does_not_load_tensor_libraries() -> None:
    code = (
        "import sys, mindprint_pipeline\n"
        "from mindprint_pipeline import DPOPipeline, PipelineConfig, load_curriculum\n"
        f"bad = [m for m in {FORBIDDEN!r} if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_wheel_dependencies_are_interfaces_only() -> None:
    project = tomllib.loads((PKG / "pyproject.toml").read_text())["project"]
    assert project["dependencies"] == ["mindprint-interfaces>=0.1,<0.2"]
    assert "optional-dependencies" not in project
