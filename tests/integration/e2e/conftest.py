"""End to end: what `imagekit publish` writes, spawned by real hubs.

One publication serves the whole package: the images the hubs spawn (scipy, r, vscode and
scipy-hpc's SIF) are built, smoke-tested and published to a fresh local registry, and every
hub is configured from dist/exports/, the files `imagekit publish` wrote.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from imagekit.publish.catalog import PublishedCatalog, read
from tests.integration import suite
from tests.integration.conftest import failed, imagekit
from tests.integration.registry import LocalRegistry, fresh_registry
from tests.integration.slurm import Cluster

DIST = suite.DIST
E2E_IMAGES = ["scipy", "r", "vscode", "scipy-hpc"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/e2e/" in str(item.path):
            item.add_marker(pytest.mark.integration)
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="package")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    yield from fresh_registry(tmp_path_factory.mktemp("e2e-registry"))


@pytest.fixture(scope="package")
def published(registry: LocalRegistry, base_image: str,
              smoke: Callable[[str], dict[str, Any]]) -> PublishedCatalog:
    """The hubs' images built, tested and published; the catalog imagekit wrote."""
    with STEPS.timed("build r"):
        imagekit("build", "r", "--format", "docker", "--plain")
    with STEPS.timed("build vscode"):
        imagekit("build", "vscode", "--format", "docker", "--plain")
    with STEPS.timed("build scipy scipy-hpc (+ SIFs)"):
        imagekit("build", "scipy", "scipy-hpc", "--format", "docker", "--format", "sif",
                 "--sif-method", "native", "--plain")
    for name in E2E_IMAGES:
        with STEPS.timed(f"test {name}"):
            report = smoke(name)
        assert report["exit"] == 0, failed(report)
    with STEPS.timed("publish " + " ".join(E2E_IMAGES)):
        imagekit("publish", *E2E_IMAGES)
    return read(DIST / "catalog.json")


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """A one-node Slurm of the module's own (munge's socket is the host's standard one)."""
    running = Cluster()
    try:
        running.start()
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="package")
def exports(published: PublishedCatalog) -> Path:
    return DIST / "exports"


class Timings:
    """Spawn-to-ready seconds per path, printed at the end (the README quotes them)."""

    def __init__(self) -> None:
        self.seconds: dict[str, list[float]] = {}

    def add(self, path: str, seconds: float) -> None:
        self.seconds.setdefault(path, []).append(round(seconds, 2))


TIMINGS = Timings()


class Steps:
    """Seconds per step of the package's setup, printed at the end."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def timed(self, step: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            self.seconds[step] = round(time.monotonic() - started, 1)


STEPS = Steps()


@pytest.fixture(scope="session")
def timings() -> Timings:
    return TIMINGS


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if STEPS.seconds:
        terminalreporter.section("end-to-end setup (s)")
        for step, seconds in STEPS.seconds.items():
            terminalreporter.write_line(f"{step}: {seconds}")
    if not TIMINGS.seconds:
        return
    terminalreporter.section("spawn to ready (s)")
    for path, values in TIMINGS.seconds.items():
        median = sorted(values)[len(values) // 2]
        terminalreporter.write_line(f"{path}: median {median} of {values}")


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    raise AssertionError(f"{what}: not within {timeout:.0f} s")
