"""The end-to-end package's publication: the images the hubs spawn (scipy, r, vscode and
scipy-hpc's SIF) built, smoke-tested and published to a fresh registry, as a site's CI would.

It runs in place, on the suite's own project and engine, when the package's first test asks
for it: the builds are the session's own (test_heavy builds r and vscode too; whichever runs
first builds them, the other finds them in the engine's cache), and the registry takes the
suite's address, which no other module holds by then. The hubs read what `imagekit publish`
wrote in that project's dist/; DockerSpawner's host is an empty dockerd that pulls each image
by its digest (test_dockerspawner.py).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from imagekit.published.catalog import PublishedCatalog, read
from tests.integration import suite
from tests.integration.conftest import failed, imagekit, smoke_test

IMAGES = ["scipy", "r", "vscode", "scipy-hpc"]


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


def publish() -> PublishedCatalog:
    """Build, test and publish the hubs' images into the registry on the suite's address;
    the catalog `imagekit publish` wrote (its exports beside it, in the suite's dist/)."""
    with STEPS.timed("build r"):
        imagekit("build", "r", "--format", "docker", "--plain")
    with STEPS.timed("build vscode"):
        imagekit("build", "vscode", "--format", "docker", "--plain")
    with STEPS.timed("build scipy scipy-hpc (+ SIFs)"):
        imagekit("build", "scipy", "scipy-hpc", "--format", "docker", "--format", "sif",
                 "--sif-method", "native", "--plain")
    for name in IMAGES:
        with STEPS.timed(f"test {name}"):
            report = smoke_test(name)  # once per session: test_heavy's too
        assert report["exit"] == 0, (name, failed(report))
    with STEPS.timed("publish " + " ".join(IMAGES)):
        imagekit("publish", *IMAGES)
    return read(suite.DIST / "catalog.json")
