"""End to end: what `imagekit publish` writes, spawned by real hubs.

One publication serves the whole package (publication.py): the images the hubs spawn are
built, smoke-tested and published to a fresh local registry, and every hub is configured
from dist/exports/, the files `imagekit publish` wrote. DockerSpawner's host is an empty
dockerd of its own, which pulls what it spawns.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from imagekit.published.catalog import PublishedCatalog
from tests.integration import suite
from tests.integration.e2e import publication
from tests.integration.registry import fresh_registry
from tests.integration.slurm import Cluster


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/e2e/" in str(item.path):
            item.add_marker(pytest.mark.integration)
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="package")
def published(base_image: str, tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[PublishedCatalog]:
    """The package's publication (publication.py) into a fresh registry on the suite's
    address, which is stopped when the package ends; the catalog `imagekit publish` wrote."""
    registries = fresh_registry(tmp_path_factory.mktemp("e2e-registry"))
    next(registries)
    try:
        yield publication.publish()
    finally:
        next(registries, None)  # stopped, its blobs removed, also when the setup failed


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
    return suite.DIST / "exports"


class Timings:
    """Spawn-to-ready seconds per path, printed at the end (the README quotes them)."""

    def __init__(self) -> None:
        self.seconds: dict[str, list[float]] = {}

    def add(self, path: str, seconds: float) -> None:
        self.seconds.setdefault(path, []).append(round(seconds, 2))


TIMINGS = Timings()


@pytest.fixture(scope="session")
def timings() -> Timings:
    return TIMINGS


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if publication.STEPS.seconds:
        terminalreporter.section("end-to-end setup (s)")
        for step, seconds in publication.STEPS.seconds.items():
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
