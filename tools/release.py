"""Build every package's wheel and prove each one stands alone.

1. ``uv build --all-packages`` into ``dist/``.
2. Check each wheel's METADATA dependencies against the package graph (docs/architecture.md):
   interfaces has none; pipeline needs interfaces only; no backend pulls the other's ML stack.
3. Install each wheel by itself into a fresh venv (sibling wheels found in ``dist/``, the rest
   from the index or uv's cache) and import it; for interfaces and pipeline also assert that
   no ML library was installed.

Usage: ``uv run python tools/release.py [--skip-install]``; exit code 0 when every check passes.
Per-package release tags look like ``mindprint-torch/v0.1.0``.
"""

from __future__ import annotations

import argparse
import email.parser
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DIST = ROOT / "dist"
ML = {"torch", "mlx", "mlx-lm", "mlx-cpu", "transformers", "peft", "trl", "numpy", "accelerate", "datasets"}

# distribution -> (import name, allowed unconditional dependency names, forbidden dependency names)
GRAPH: dict[str, tuple[str, set[str], set[str]]] = {
    "mindprint-interfaces": ("mindprint_interfaces", set(), ML),
    "mindprint-kit": ("mindprint_kit", {"mindprint-interfaces", "numpy", "safetensors", "huggingface-hub"},
                      ML - {"numpy"}),
    "mindprint-pipeline": ("mindprint_pipeline", {"mindprint-interfaces"}, ML),
    "mindprint-torch": ("mindprint_torch", {"mindprint-interfaces", "mindprint-kit", "torch", "transformers", "peft", "trl", "accelerate",
                                            "datasets", "safetensors", "gguf"}, {"mlx", "mlx-lm", "mindprint-mlx"}),
    "mindprint-mlx": ("mindprint_mlx", {"mindprint-interfaces", "mindprint-kit", "mlx", "mlx-lm", "numpy", "safetensors"},
                      {"torch", "transformers", "peft", "trl", "mindprint-torch"}),
    "mindprint-trainer": ("mindprint_trainer", {"mindprint-interfaces", "mindprint-pipeline", "pyyaml", "rich",
                                                "matplotlib"}, {"torch", "mlx", "transformers"}),
}


def _name(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[(]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def wheel_metadata(wheel: Path) -> tuple[str, list[str]]:
    with zipfile.ZipFile(wheel) as zf:
        meta_name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        msg = email.parser.Parser().parsestr(zf.read(meta_name).decode())
        names = zf.namelist()
    dist = msg["Name"]
    if not any(n.endswith("py.typed") for n in names):
        raise SystemExit(f"{wheel.name}: no py.typed marker")
    return dist, msg.get_all("Requires-Dist") or []


def check_dependencies(wheel: Path) -> list[str]:
    dist, requires = wheel_metadata(wheel)
    _, allowed, forbidden = GRAPH[dist]
    problems = []
    for req in requires:
        name = _name(req)
        is_extra = "extra ==" in req
        if name in forbidden and not is_extra:
            problems.append(f"{dist}: forbidden dependency {req!r}")
        elif not is_extra and name not in allowed:
            problems.append(f"{dist}: dependency {req!r} is not in the package graph")
    runtime = [req for req in requires if "extra ==" not in req]  # extras (e.g. interfaces[testing]) are opt-in
    if dist in ("mindprint-interfaces",) and runtime:
        problems.append(f"{dist}: must have no runtime dependencies, has {runtime}")
    for req in requires:
        if _name(req).startswith("mindprint-") and not (re.search(r">=\s*[\d.]+", req) and re.search(r"<\s*[\d.]+", req)):
            problems.append(f"{dist}: inter-package dependency {req!r} needs a version range")
    return problems


# The extras a user installs outside the clone (README: "Installing outside the clone") and what each must pull.
APP_EXTRAS: dict[str, set[str]] = {"torch": {"mindprint-torch"}, "mlx": {"mindprint-mlx"},
                                   "all": {"mindprint-torch", "mindprint-mlx"}}


def check_extras(wheel: Path) -> list[str]:
    """The app wheel declares ``[torch]``, ``[mlx]`` and ``[all]``, each requiring its backend wheels."""
    dist, requires = wheel_metadata(wheel)
    if dist != "mindprint-trainer":
        return []
    pulled: dict[str, set[str]] = {}
    for req in requires:
        match = re.search(r"""extra\s*==\s*["']([^"']+)["']""", req)
        if match:
            pulled.setdefault(match.group(1), set()).add(_name(req))
    problems = []
    for extra, needed in APP_EXTRAS.items():
        missing = needed - pulled.get(extra, set())
        if missing:
            problems.append(f"{dist}: extra [{extra}] does not require {sorted(missing)}")
    return problems


def smoke_install(wheel: Path) -> list[str]:
    dist, _ = wheel_metadata(wheel)
    module = GRAPH[dist][0]
    with tempfile.TemporaryDirectory(prefix=f"release-{dist}-") as tmp:
        venv = Path(tmp) / "venv"
        subprocess.run(["uv", "venv", "-q", "--python", sys.executable, str(venv)], check=True)
        py = venv / "bin" / "python"
        install = subprocess.run(
            ["uv", "pip", "install", "-q", "--python", str(py), "--find-links", str(DIST),
             *[arg for dist in GRAPH for arg in ("--refresh-package", dist)],  # never a stale same-version wheel
             "--constraint", str(_constraints(Path(tmp))), str(wheel)],
            capture_output=True, text=True,
            env={k: v for k, v in os.environ.items() if k != "UV_COMPILE_BYTECODE"},  # .ci/run's; not needed here
        )
        if install.returncode != 0:
            return [f"{dist}: install failed:\n{install.stderr}"]
        code = (f"import sys, {module}; "
                "print(','.join(sorted(m for m in ('torch','mlx','transformers','numpy') if m in sys.modules)))")
        run = subprocess.run([str(py), "-c", code], capture_output=True, text=True)
        if run.returncode != 0:
            return [f"{dist}: import {module} failed:\n{run.stderr}"]
        problems = []
        if run.stdout.strip() and dist in ("mindprint-interfaces", "mindprint-pipeline", "mindprint-trainer"):
            problems.append(f"{dist}: importing {module} pulled in {run.stdout.strip()}")
        if dist in ("mindprint-interfaces", "mindprint-pipeline"):
            freeze = subprocess.run(["uv", "pip", "freeze", "--python", str(py)], capture_output=True, text=True, check=True)
            installed = {_name(line) for line in freeze.stdout.splitlines() if line.strip()}
            extra = installed - {"mindprint-interfaces", "mindprint-pipeline"}
            if extra:
                problems.append(f"{dist}: a clean install brought in {sorted(extra)}")
        print(f"  {dist}: installed alone and imported {module}")
        return problems


def _constraints(tmp: Path) -> Path:
    """Pin every third-party version to the workspace lock (no surprise torch upgrade).

    Constraints, not overrides: an override replaces a package's own requirement and would drop
    its extras (torch needs ``cuda-toolkit[cufile,...]``; overriding it leaves the CUDA libs out).
    """
    path = tmp / "constraints.txt"
    pins = subprocess.run(["uv", "export", "--frozen", "--no-hashes", "--no-emit-workspace", "--all-packages",
                           "--no-dev", "--no-header", "--no-annotate"], cwd=ROOT, capture_output=True, text=True, check=True)
    lines = [re.sub(r"\[[^\]]*\]", "", line) for line in pins.stdout.splitlines()
             if line and not line.startswith(("-", "#"))]
    path.write_text("\n".join(lines) + "\n")
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip-install", action="store_true", help="only build and check metadata")
    args = parser.parse_args()
    if DIST.exists():
        shutil.rmtree(DIST)
    subprocess.run(["uv", "build", "--all-packages", "-q", "-o", str(DIST)], cwd=ROOT, check=True)
    wheels = sorted(DIST.glob("*.whl"))
    dists = {wheel_metadata(w)[0] for w in wheels}
    problems = [f"missing wheel for {d}" for d in sorted(set(GRAPH) - dists)]
    for wheel in wheels:
        problems += check_dependencies(wheel)
        problems += check_extras(wheel)
    print(f"built {len(wheels)} wheels: {', '.join(w.name for w in wheels)}")
    if not args.skip_install and not problems:
        for wheel in wheels:
            problems += smoke_install(wheel)
    for p in problems:
        print("FAIL:", p, file=sys.stderr)
    print("release check:", "FAILED" if problems else "OK")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
