"""Item 10 (`fresh_host`): the first start on a host that has never seen the image.

What a user meets on a new node: `docker pull REPOSITORY@sha256:...` and `docker run` to the
first HTTP 200 from the server's API, on a second dockerd started empty for every pull (its
own data root, exec root, socket and bridge: tests/integration/runners.py), from one
registry of the bench's own. imagekit's scipy and pytorch-cuda are published the way a site
publishes them (`imagekit build`, `test`, `publish`: the digests come from the published
catalog); hpccm's images of the same packages are built here and pushed to the same registry
by the same engine, so both sides' layers are compressed the same way.

scipy's SIF is measured the same way under the real Apptainer 1.4.5 (the sid root of the
tests, run as an unprivileged user): `apptainer pull oras://...@sha256` with an empty
Apptainer cache, then `apptainer run` to the first 200.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests

from bench import alternatives
from bench.alternatives import PackageSet
from bench.host import BenchError, docker, imagekit, remove_images
from bench.scenarios import Log, Settings, first_200, start_argv, until_200
from bench.stats import Sample
from bench.workspace import Workspace
from imagekit.published.catalog import read
from tests.integration import apptainer as ap
from tests.integration import suite
from tests.integration.registry import LocalRegistry
from tests.integration.runners import Runner

NAMESPACE = "bench-fresh"
IMAGES = ("scipy", "pytorch-cuda")
SUBNET = 61  # 172.30.61.0/24: the fresh host's bridge (the tests' runners use others)


def fresh_host(settings: Settings, log: Log) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="imagekit-bench-fresh-"))
    address = suite.free_address()
    hpccm: dict[str, str] = {}
    registry = LocalRegistry(folder / "registry", address=address)
    try:
        registry.start()
        with _workspace(address) as ws:
            return _measure(ws, address, hpccm, settings, folder, log)
    finally:
        try:
            remove_images(*hpccm.values())
        finally:
            try:
                registry.stop()
            finally:
                shutil.rmtree(folder, ignore_errors=True)  # its blobs: gigabytes


def _measure(ws: Workspace, address: str, hpccm: dict[str, str], settings: Settings,
             folder: Path, log: Log) -> dict[str, Any]:
    refs = _publish(ws, log)
    for image in IMAGES:
        hpccm[image] = f"{address}/{NAMESPACE}-hpccm/{image}:latest"
        refs[f"hpccm {image}"] = _hpccm(ws, image, hpccm[image], log)
    result: dict[str, Any] = {"registry": address, "references": refs,
                              "size": {name: _pushed_size(ref) for name, ref in refs.items()
                                       if not ref.startswith("oras://")}}
    for image in IMAGES:
        ways = {"imagekit": (refs[image], start_argv(refs[image], None)),
                "hpccm": (refs[f"hpccm {image}"],
                          start_argv(refs[f"hpccm {image}"], "root"))}
        # pytorch-cuda is 3 GB compressed a side: fewer runs of it.
        runs = settings.repeats if image == "scipy" else max(1, settings.repeats - 1)
        result[image] = _pull_and_start(folder, ways, runs, image, log)
    result["scipy_sif"] = _sif(refs["scipy sif"], runs=settings.repeats, log=log)
    return result


@contextlib.contextmanager
def _workspace(registry: str) -> Iterator[Workspace]:
    ws = Workspace(NAMESPACE, registry=registry)
    try:
        yield ws
    finally:
        ws.close()


def _publish(ws: Workspace, log: Log) -> dict[str, str]:
    """imagekit's images (and scipy's SIF) built, tested and published as a site does it:
    their references by digest, from the published catalog."""
    for step in (("build", *IMAGES), ("test", *IMAGES), ("publish", *IMAGES)):
        started = time.monotonic()
        imagekit(ws.catalog, *step)
        log(f"fresh host: imagekit {step[0]} {' '.join(IMAGES)}: "
            f"{time.monotonic() - started:.0f} s")
    for converted in (ws.dir / "dist").glob("*.sif"):  # in the registry now: disk back
        converted.unlink()
    published = read(ws.dir / "dist" / "catalog.json")
    refs = {image: published.image(image).reference for image in IMAGES}
    sif = published.image("scipy").sif
    if sif is None:
        raise BenchError("the published catalog has no SIF for scipy")
    refs["scipy sif"] = sif.reference
    return refs


def _hpccm(ws: Workspace, image: str, tag: str, log: Log) -> str:
    """hpccm's image of the same packages, pushed by the same engine: its digest reference."""
    started = time.monotonic()
    packages = PackageSet.of(ws.model(), image)
    alternatives.build(alternatives.hpccm_recipe(packages), tag,
                       str(ws.model().site.ca_bundle))
    docker("push", tag)
    repository = tag.rpartition(":")[0]
    digests = docker("image", "inspect", "-f", "{{range .RepoDigests}}{{.}} {{end}}",
                     tag).split()
    mine = [d for d in digests if d.startswith(f"{repository}@")]
    if not mine:
        raise BenchError(f"{tag}: no digest after the push ({digests})")
    remove_images(tag)  # pulled from the registry from now on: its 6.5 GB (pytorch-cuda) back
    log(f"fresh host: hpccm's {image} built and pushed: {time.monotonic() - started:.0f} s")
    return mine[0]


def _pushed_size(reference: str) -> int:
    """Bytes a pull of `HOST/REPOSITORY@sha256:...` fetches: its config and compressed
    layers, as its manifest in the registry lists them."""
    host, _, rest = reference.partition("/")
    repository, _, digest = rest.partition("@")
    answer = requests.get(f"http://{host}/v2/{repository}/manifests/{digest}", timeout=30,
                          headers={"Accept": ", ".join(MANIFESTS)})
    answer.raise_for_status()
    manifest = answer.json()
    return int(manifest["config"]["size"]) + sum(int(x["size"]) for x in manifest["layers"])


MANIFESTS = ("application/vnd.docker.distribution.manifest.v2+json",
             "application/vnd.oci.image.manifest.v1+json")


def _pull_and_start(folder: Path, ways: dict[str, tuple[str, list[str]]], runs: int,
                    image: str, log: Log) -> dict[str, Any]:
    total = {way: Sample() for way in ways}
    pull = {way: Sample() for way in ways}
    for run_no in range(runs):
        # Interleaved, each side first in every other round: the machine's noise, and any
        # drift over the run, falls on both alike.
        order = list(ways.items())
        for way, (ref, argv) in order[::-1] if run_no % 2 else order:
            with _empty_engine(folder) as env:
                _cold_caches()
                started = time.monotonic()
                docker("pull", "-q", ref, env=env)
                pull[way].add(time.monotonic() - started)
                total[way].add(pull[way].values[-1] + first_200(argv, env))
            log(f"fresh host, run {run_no + 1}: {way} {image}: pull "
                f"{pull[way].values[-1]:.1f} s, to the first 200 {total[way].values[-1]:.1f} s")
    return {"total": {w: s.as_dict() for w, s in total.items()},
            "pull": {w: s.as_dict() for w, s in pull.items()}}


def _cold_caches() -> None:
    """The kernel's page cache written back and dropped, as on a node that has just come
    up: the earlier runs' gigabytes in it slowed each later pull here (scipy's pull took
    13, then 31, then 40 s), the kernel reclaiming memory as the layers were written."""
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


@contextlib.contextmanager
def _empty_engine(folder: Path) -> Iterator[dict[str, str]]:
    """A dockerd that has never seen any image: the environment that speaks to it."""
    engine = Runner("fresh", folder / "engine", SUBNET)
    try:
        engine.start()
        yield {"DOCKER_HOST": f"unix://{engine.socket}"}
    finally:
        engine.stop()


def _sif(reference: str, runs: int, log: Log) -> dict[str, Any]:
    """`apptainer pull oras://...@sha256` into an empty cache, then `apptainer run` to the
    first 200, as an unprivileged user of the sid root."""
    runner = ap.Apptainer(ap.ensure_root())
    total, pull = Sample(), Sample()
    size = 0
    with ap.fuse_for_user(), _sif_cleared(runner):
        for run_no in range(runs):
            _clear_sif(runner)
            _cold_caches()
            started = time.monotonic()
            runner.run("apptainer", "pull", "--no-https", "fresh.sif", reference,
                       timeout=1200)
            pull.add(time.monotonic() - started)
            size = (runner.home / "fresh.sif").stat().st_size
            total.add(pull.values[-1] + _apptainer_first_200(runner))
            log(f"fresh host, run {run_no + 1}: scipy's SIF: pull {pull.values[-1]:.1f} s, "
                f"to the first 200 {total.values[-1]:.1f} s")
    return {"total": total.as_dict(), "pull": pull.as_dict(), "size": size}


@contextlib.contextmanager
def _sif_cleared(runner: ap.Apptainer) -> Iterator[None]:
    """The pulled SIF and Apptainer's cache gone afterwards, whatever happened: the sid
    root is kept between sessions."""
    try:
        yield
    finally:
        _clear_sif(runner)


def _clear_sif(runner: ap.Apptainer) -> None:
    (runner.home / "fresh.sif").unlink(missing_ok=True)
    shutil.rmtree(runner.home / ".apptainer" / "cache", ignore_errors=True)


def _apptainer_first_200(runner: ap.Apptainer) -> float:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    token = "bench-fresh-token"
    runner.env.update({"JUPYTER_TOKEN": token, "XDG_RUNTIME_DIR": f"/run/user/{ap.UID}"})
    started = time.monotonic()
    proc = runner.start("apptainer", "run", "fresh.sif", "--ip=127.0.0.1", f"--port={port}")
    url = f"http://127.0.0.1:{port}/api/status"
    try:
        seconds = until_200(url, token, started, 180, lambda: proc.poll() is None)
    finally:
        _stop(proc)
    if seconds is None:
        raise BenchError(f"apptainer run: no 200 from {url}")
    return seconds


def _stop(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
