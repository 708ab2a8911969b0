"""Shared fixtures: a private copy of the project's catalog for each test that edits one."""

from __future__ import annotations

import shutil
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


def pytest_sessionstart(session: pytest.Session) -> None:
    free = _free_gb()
    _DISK.update(start=free, low=free, where="the start")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    free = _free_gb()
    low = _DISK.get("low")
    if isinstance(low, float) and free < low:
        _DISK.update(low=free, where=f"{report.nodeid} ({report.when})")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if "start" not in _DISK:
        return
    terminalreporter.section("Disk (GB free on /var/lib)")
    terminalreporter.write_line(f"at the start: {_DISK['start']}; at the end: {_free_gb()}; "
                                f"lowest: {_DISK['low']}, after {_DISK['where']}")
