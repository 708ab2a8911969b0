"""Item 9 (`engines`): the scipy image built by Docker, by rootful Podman and by rootless
Podman, in one run. Each engine starts cold for scipy and its parent (their images and
build caches gone, the bootstrapped Debian base kept), then rebuilds after one pip package
is added to scipy.

Rootless Podman runs as a user of its own (tests/integration/podman.py makes it the same
way the tests do), with the native overlay storage this kernel allows.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.host import BenchError, docker, imagekit, prune_build_cache, remove_images
from bench.stats import Sample
from bench.workspace import Workspace
from tests.integration.podman import Rootless, rootless_user

Log = Callable[[str], None]
NAMESPACE = "bench-engines"
IMAGES = ("base", "scipy")


@dataclass
class Way:
    """One engine: how to run imagekit with it, and how to make it cold again."""

    name: str
    run: Callable[..., subprocess.CompletedProcess[str]]
    cold: Callable[[], None]
    sync: Callable[[Path], None] = lambda stacks: None  # the workspace's stacks to its own

    def build(self) -> float:
        started = time.monotonic()
        result = self.run("build", "scipy", "--format", "docker", "--json")
        seconds = time.monotonic() - started
        statuses = {o["image"]: o["status"] for o in json.loads(result.stdout)["images"]}
        if statuses.get("scipy") != "built":
            raise BenchError(f"{self.name}: scipy was {statuses.get('scipy')}, not built")
        return seconds


def _podman(*args: str, user: Rootless | None = None) -> None:
    argv = ["podman", *args]
    if user is not None:
        user.run(*argv, timeout=600, check=False)
    else:
        subprocess.run(argv, capture_output=True, timeout=600, check=False)


def _podman_cold(ws_refs: list[str], user: Rootless | None = None) -> Callable[[], None]:
    def cold() -> None:
        _podman("rmi", "--force", *ws_refs, user=user)
        _podman("image", "prune", "--force", user=user)  # the intermediate layers
        home = user.home if user else Path.home()
        shutil.rmtree(home / ".cache/imagekit/podman-build", ignore_errors=True)
    return cold


@contextmanager
def _ways(ws: Workspace) -> Iterator[list[Way]]:
    refs = [ws.ref(i) for i in IMAGES]

    def run_as(engine: str) -> Callable[..., subprocess.CompletedProcess[str]]:
        def go(*args: str) -> subprocess.CompletedProcess[str]:
            return imagekit(ws.catalog, *args, "--engine", engine)
        return go

    def docker_cold() -> None:
        remove_images(*refs)
        prune_build_cache()

    files = [(str(p.relative_to(ws.dir)), p.read_text())
             for p in [ws.catalog, *ws.dir.glob("stacks/*"), *ws.dir.glob("profiles/*")]
             if p.is_file()]
    with rootless_user(files) as user:
        def rootless(*args: str) -> subprocess.CompletedProcess[str]:
            return user.imagekit(*args, "--engine", "podman")

        def sync(stacks: Path) -> None:
            for path in stacks.glob("scipy.*"):
                shutil.copy(path, user.work / "stacks" / path.name)
                shutil.chown(user.work / "stacks" / path.name, user.uid, user.gid)

        yield [Way("docker", run_as("docker"), docker_cold),
               Way("podman rootful", run_as("podman"), _podman_cold(refs)),
               Way("podman rootless", rootless, _podman_cold(refs, user), sync)]


def engines(repeats: int, log: Log) -> dict[str, Any]:
    cold: dict[str, Sample] = {}
    rebuild: dict[str, Sample] = {}
    ws = Workspace(NAMESPACE)
    try:
        with _ways(ws) as ways:
            for way in ways:
                way.run("base")  # the bootstrapped Debian each engine builds on
                cold[way.name], rebuild[way.name] = Sample(), Sample()
            for run_no in range(repeats):
                for way in ways:
                    way.cold()
                    seconds = cold[way.name].add(way.build())
                    log(f"engines, run {run_no + 1}: {way.name} cold {seconds:.1f} s")
                    added = _add_package(ws, way, run_no)
                    seconds = rebuild[way.name].add(way.build())
                    log(f"engines, run {run_no + 1}: {way.name} after adding {added} "
                        f"{seconds:.1f} s")
                    _add_package(ws, way, None)
    finally:
        ws.remove_images()
        ws.close()
    versions = {"docker": docker("version", "-f", "{{.Server.Version}}", check=False).strip(),
                "podman": subprocess.run(["podman", "--version"], capture_output=True,
                                         text=True, check=False).stdout.strip()}
    return {"cold": {w: s.as_dict() for w, s in cold.items()},
            "rebuild": {w: s.as_dict() for w, s in rebuild.items()}, "versions": versions}


def _add_package(ws: Workspace, way: Way, run_no: int | None) -> str:
    """Add one package to scipy (None: take it out again) and relock, in the checkout the
    engine's imagekit reads."""
    from bench.scenarios import ADDED

    original = [p for p in ws.stack_pip("scipy") if p not in ADDED]
    added = ADDED[run_no % len(ADDED)] if run_no is not None else ""
    ws.edit_stack("scipy", pip=[*original, added] if added else original)
    ws.lock()
    way.sync(ws.dir / "stacks")
    return added
