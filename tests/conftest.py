"""Shared fixtures: a private copy of the project's catalog for each test that edits one."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from imagekit.cli import app
from imagekit.model import Catalog
from imagekit.resolve import load_catalog

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of catalog.yaml, stacks/, profiles/ and recipes/ that a test may change."""
    for name in ("stacks", "profiles", "recipes", "schemas"):
        shutil.copytree(ROOT / name, tmp_path / name)
    shutil.copy(ROOT / "catalog.yaml", tmp_path / "catalog.yaml")
    return tmp_path


@pytest.fixture
def catalog() -> Catalog:
    return load_catalog(ROOT / "catalog.yaml")


@pytest.fixture
def cli() -> Callable[..., tuple[int, str]]:
    runner = CliRunner()

    def invoke(*args: str) -> tuple[int, str]:
        result = runner.invoke(app, list(args), catch_exceptions=False)
        return result.exit_code, result.output

    return invoke


# --- disk: the integration suite's largest resource on a CI machine ------------------------
# Free space on the disk holding /var/lib (Docker's and Podman's stores) and the temporary
# folders, read after every test phase. The summary gives the lowest reading and where it
# was seen, so a run that comes close to a full disk says so before one fails for it.

_DISK: dict[str, object] = {}


def _free_gb() -> float:
    return round(shutil.disk_usage("/var/lib").free / 1e9, 1)


# --- time: where the session's own thread spends it ------------------------------------
# Per module, when its first test phase began and its last one ended, in seconds from the
# session's start, and the seconds its phases took: the run's critical path, module by
# module (the setups beside the suite print their own times).

_BEGAN: list[float] = []
_MODULES: dict[str, list[float]] = {}  # module: [first start, last stop, seconds]
_CPU: list[list[int]] = []  # /proc/stat's cpu line at the start: user nice system idle iowait…


def _cpu() -> list[int]:
    with open("/proc/stat") as stat:
        return [int(n) for n in stat.readline().split()[1:]]


def _cpu_since(start: list[int]) -> str:
    """How the machine's cores spent the session: busy (ours and niced), waiting on the disk,
    idle."""
    ticks = [b - a for a, b in zip(start, _cpu(), strict=True)]
    total = sum(ticks) or 1
    user, nice, system, idle, iowait = ticks[:5]
    rest = total - user - nice - system - idle - iowait

    def share(n: int) -> str:
        return f"{100 * n / total:.0f} %"

    return (f"busy {share(user + system + rest)}, niced {share(nice)}, waiting on the disk "
            f"{share(iowait)}, idle {share(idle)}")


def pytest_sessionstart(session: pytest.Session) -> None:
    _BEGAN.append(time.monotonic())
    _CPU.append(_cpu())
    free = _free_gb()
    _DISK.update(start=free, low=free, where="the start")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if _BEGAN:
        stop = time.monotonic() - _BEGAN[0]
        span = _MODULES.setdefault(report.nodeid.split("::")[0],
                                   [stop - report.duration, stop, 0.0])
        span[1] = stop
        span[2] += report.duration
    free = _free_gb()
    low = _DISK.get("low")
    if isinstance(low, float) and free < low:
        _DISK.update(low=free, where=f"{report.nodeid} ({report.when})")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if "start" not in _DISK:
        return
    slow = {m: s for m, s in _MODULES.items() if s[2] >= 10}
    if slow:
        terminalreporter.section("Modules of 10 s or more, as the session ran them (s)")
        for module, (first, last, seconds) in slow.items():
            terminalreporter.write_line(f"{first:7.0f} to {last:7.0f}: {seconds:7.1f} "
                                        f"{module}")
    if _CPU:
        terminalreporter.section("The machine's cores over the session")
        terminalreporter.write_line(_cpu_since(_CPU[0]))
    terminalreporter.section("Disk (GB free on /var/lib)")
    terminalreporter.write_line(f"at the start: {_DISK['start']}; at the end: {_free_gb()}; "
                                f"lowest: {_DISK['low']}, after {_DISK['where']}")
