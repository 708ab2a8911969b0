"""Item 12 (`layers`): image layers in gzip (the engine's push, the default) against zstd
(`layers: {compression: zstd}`: imagekit compresses each layer once and pushes it).

For scipy and pytorch-cuda, built and tested once: `imagekit publish` of both into an empty
registry of the bench's own, with an empty layer index (a machine's first push), each way
in turn, the registry emptied before each; the bytes the registry holds; and the first
start of the result on hosts that have never seen it, as item 10 measures it (`docker pull`
by digest, then `docker run` to the first 200): gzip on an empty Docker 20.10 and on an
empty Docker 28, zstd on an empty Docker 28 (Docker 20.10 cannot read zstd layers). Docker
28 is Debian sid's, from the root the tests make (tests/integration/engines.py).
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.fresh import _cold_caches, _pushed_size
from bench.fresh import _empty_engine as _empty_dockerd
from bench.host import BenchError, docker, run
from bench.scenarios import Log, Settings, first_200, start_argv
from bench.stats import Sample
from bench.workspace import Workspace
from imagekit.published.catalog import read
from tests.integration import engines, suite
from tests.integration.registry import LocalRegistry

NAMESPACE = "bench-layers"
IMAGES = ("scipy", "pytorch-cuda")
SUBNET_28 = 62  # 172.31.62.0/24: the empty Docker 28's bridge (Docker 20.10's: item 10's)
WAYS = ("gzip", "zstd")
HOSTS = {"gzip": ("docker 20.10", "docker 28"), "zstd": ("docker 28",)}


def layers(settings: Settings, log: Log) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="imagekit-bench-layers-"))
    address = suite.free_address()
    ws = Workspace(NAMESPACE, registry=address)
    try:
        catalogs = _catalogs(ws)
        for step in ("build", "test"):
            started = time.monotonic()
            run(_imagekit(catalogs["gzip"], step, *IMAGES))
            log(f"layers: imagekit {step} {' '.join(IMAGES)}: "
                f"{time.monotonic() - started:.0f} s")
        registry = LocalRegistry(folder / "registry", address=address)
        return _measure(catalogs, registry, settings, folder, log)
    finally:
        try:
            ws.close()
        finally:
            shutil.rmtree(folder, ignore_errors=True)


def _imagekit(catalog: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "imagekit", *args, "--catalog", str(catalog)]


def _catalogs(ws: Workspace) -> dict[str, Path]:
    """The workspace's catalog with Docker images only for the two (a SIF is no layer), and
    the same with zstd layers beside it (one dist/: the test records are shared)."""
    text = ws.catalog.read_text()
    for image in IMAGES:
        stanza = f"  - stack: {image}\n    formats: [docker, sif]\n"
        if stanza not in text:
            raise BenchError(f"catalog.yaml: {image} is not listed as `{stanza.strip()}`")
        text = text.replace(stanza, f"  - stack: {image}\n")
    ws.catalog.write_text(text)
    zstd = ws.catalog.with_name("catalog-zstd.yaml")
    zstd.write_text(text + "layers: {compression: zstd}\n")
    return {"gzip": ws.catalog, "zstd": zstd}


def _measure(catalogs: dict[str, Path], registry: LocalRegistry, settings: Settings,
             folder: Path, log: Log) -> dict[str, Any]:
    push = {way: {image: Sample() for image in IMAGES} for way in WAYS}
    size: dict[str, dict[str, int]] = {way: {} for way in WAYS}
    total = {f"{way} on {host}": {image: Sample() for image in IMAGES}
             for way in WAYS for host in HOSTS[way]}
    pull = {key: {image: Sample() for image in IMAGES} for key in total}
    for run_no in range(settings.repeats):
        # Each way first in every other round: the machine's drift falls on both alike.
        for way in WAYS[::-1] if run_no % 2 else WAYS:
            with _empty_registry(registry, folder):
                refs = _publish(catalogs[way], folder, push[way], log, way)
                for image, ref in refs.items():
                    size[way][image] = _pushed_size(ref)
                for host in HOSTS[way]:
                    for image, ref in refs.items():
                        # pytorch-cuda is 3 GB compressed: in the first two rounds only.
                        if image == "pytorch-cuda" and run_no >= max(1, settings.repeats - 1):
                            continue
                        key = f"{way} on {host}"
                        with _empty_engine(host, folder) as env:
                            _cold_caches()
                            started = time.monotonic()
                            docker("pull", "-q", ref, env=env)
                            pull[key][image].add(time.monotonic() - started)
                            total[key][image].add(pull[key][image].values[-1]
                                                  + first_200(start_argv(ref, None), env))
                        log(f"layers, run {run_no + 1}: {way} {image} on an empty {host}: "
                            f"pull {pull[key][image].values[-1]:.1f} s, to the first 200 "
                            f"{total[key][image].values[-1]:.1f} s")
    return {"push": {w: {i: s.as_dict() for i, s in p.items()} for w, p in push.items()},
            "size": size,
            "pull": {k: {i: s.as_dict() for i, s in p.items() if s.values}
                     for k, p in pull.items()},
            "total": {k: {i: s.as_dict() for i, s in p.items() if s.values}
                      for k, p in total.items()}}


def _publish(catalog: Path, folder: Path, push: dict[str, Sample], log: Log,
             way: str) -> dict[str, str]:
    """`imagekit publish` of the two, a machine's first (an empty layer index): each image's
    push time as publish reports it; their references by digest."""
    cache = Path(tempfile.mkdtemp(prefix="cache-", dir=folder))
    try:
        result = run(_imagekit(catalog, "publish", *IMAGES, "--json"),
                     env={"XDG_CACHE_HOME": str(cache), "COLUMNS": "200"})
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    for line in json.loads(result.stdout)["images"]:
        push[line["image"]].add(float(line["seconds"]))
        log(f"layers: {way}: {line['image']} pushed in {line['seconds']} s "
            f"({int(line['sent']) / 1e6:.0f} MB sent)")
    published = read(catalog.parent / "dist" / "catalog.json")
    return {image: published.image(image).reference for image in IMAGES}


@contextmanager
def _empty_registry(registry: LocalRegistry, folder: Path) -> Iterator[None]:
    registry.start()
    try:
        yield
    finally:
        registry.stop()
        shutil.rmtree(registry.folder, ignore_errors=True)  # its blobs: gigabytes


@contextmanager
def _empty_engine(host: str, folder: Path) -> Iterator[dict[str, str]]:
    """An engine that has never seen any image: the environment that speaks to it."""
    if host == "docker 20.10":
        with _empty_dockerd(folder) as env:  # item 10's
            yield env
        return
    sid = engines.SidEngine("lay", "docker", SUBNET_28, False, engines.ensure_root())
    with engines.running(sid, folder / "host"):
        yield {"DOCKER_HOST": f"unix://{sid.socket}"}
