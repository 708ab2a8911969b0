"""The end-to-end package's publication: the images the hubs spawn (scipy, r, vscode and
scipy-hpc's SIF) built, smoke-tested and published beside the suite, as a site's CI would.

It runs on a dockerd of its own (tests/integration/runners.py), loaded with the suite's one
base, in a project of its own (namespace `e2e`) that publishes to a registry of its own.
That engine is stopped and emptied once the publication is written: the hubs' hosts have
never seen the images, and DockerSpawner pulls each one by the digest the catalog names,
as it does on a site's first spawn. Each e2e test module declares `beside` from here, so
the package's tests go last and this setup starts first (tests/integration/background.py).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from imagekit.publish.catalog import PublishedCatalog, read
from tests.integration import suite
from tests.integration.conftest import failed, imagekit
from tests.integration.registry import LocalRegistry, fresh_registry
from tests.integration.runners import own_engine

NAME = __name__  # the setup's name in tests/integration/background.py
NAMESPACE = "e2e"
IMAGES = ["scipy", "r", "vscode", "scipy-hpc"]
SUBNET = 45  # 172.30.45.0/24: the engine's bridge (runners 41-42, arm64 43, credentials 44)


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


@dataclass
class Publication:
    catalog: Path  # the package's own project; `imagekit` runs there
    registry: LocalRegistry
    stop: Callable[[], None]  # the registry

    @property
    def dist(self) -> Path:
        return self.catalog.parent / "dist"

    def published(self) -> PublishedCatalog:
        return read(self.dist / "catalog.json")


def beside(folder: Path) -> Publication:
    address = suite.free_address()
    catalog = suite.copy_project(folder / "project", NAMESPACE,
                                 parts=("stacks", "profiles", "schemas"), registry=address)
    registries = fresh_registry(folder / "registry", address)

    def stop() -> None:
        next(registries, None)

    found = Publication(catalog, next(registries), stop)
    try:
        with STEPS.timed("engine of its own, the suite's base loaded"):
            engine = own_engine("e2e", folder / "engine", SUBNET)
        env = engine.env if engine is not None else {}
        try:
            _publish(catalog, env)
        finally:
            if engine is not None:
                engine.stop()  # its images and data go: the hubs' hosts pull what they run
        return found
    except BaseException:
        found.stop()
        raise


def _publish(catalog: Path, env: dict[str, str]) -> None:
    def run(step: str, *args: str) -> str:
        with STEPS.timed(step):
            return imagekit(*args, catalog=catalog, env=env).stdout

    run("build r", "build", "r", "--format", "docker", "--plain")
    run("build vscode", "build", "vscode", "--format", "docker", "--plain")
    run("build scipy scipy-hpc (+ SIFs)", "build", "scipy", "scipy-hpc", "--format", "docker",
        "--format", "sif", "--sif-method", "native", "--plain")
    for name in IMAGES:
        with STEPS.timed(f"test {name}"):
            result = imagekit("test", name, "--json", catalog=catalog, env=env, check=False)
        report = json.loads(result.stdout)
        assert result.returncode == 0, (name, failed(report), result.stderr[-2000:])
    run("publish " + " ".join(IMAGES), "publish", *IMAGES)
