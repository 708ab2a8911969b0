"""The measurements, each a function of a workspace and the run's settings.

Every function returns plain data (seconds, bytes, which images rebuilt) for the report;
nothing here decides whether a target is met (report.py does, from the JSON).
"""

from __future__ import annotations

import json
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from bench import alternatives
from bench.alternatives import PackageSet
from bench.host import (
    HAND,
    HPCCM,
    BenchError,
    Watch,
    docker,
    docker_cli,
    image_id,
    image_size,
    imagekit,
    layers,
    prune_build_cache,
    remove_images,
    run,
)
from bench.stats import Sample
from bench.workspace import Workspace

# Small pure-Python packages that no shipped stack installs: the "one change" of a rebuild,
# a different one each run so that no run finds the previous one's layers in the cache.
ADDED = ("tabulate", "toolz", "humanize", "xmltodict", "sortedcontainers", "termcolor",
         "text-unidecode")


Log = Callable[[str], None]


@dataclass
class Settings:
    repeats: int = 3  # cold builds of the three ways, rebuilds, SIF conversions
    starts: int = 7  # server starts per image and way
    renders: int = 7
    catalog_cold: bool = True  # item 1 (the whole catalog, once: ~20 min)
    cuda: bool = True  # item 8


def _outcome(outcomes: list[dict[str, Any]], image: str) -> dict[str, Any]:
    return next(o for o in outcomes if o["image"] == image)


def _built(outcomes: list[dict[str, Any]]) -> list[str]:
    return [o["image"] for o in outcomes if o["status"] == "built"]


# --- items 1 and 2: the catalog cold, then again with nothing changed ----------------------

def catalog_cold_and_warm(ws: Workspace, settings: Settings, log: Log) -> dict[str, Any]:
    images = ws.buildable()
    result: dict[str, Any] = {"images": {}}
    if settings.catalog_cold:
        ws.remove_images()
        prune_build_cache()
        total = 0.0
        downloaded = 0
        for name in images:  # one at a time, parents first: seconds and bytes per image
            with Watch() as watch:
                outcome = _outcome(ws.build(name), name)
            if outcome["status"] != "built":
                raise BenchError(f"cold build of {name}: {outcome['status']}")
            result["images"][name] = {"seconds": round(watch.seconds, 1),
                                      "downloaded": watch.downloaded,
                                      "size": image_size(ws.ref(name))}
            total += watch.seconds
            downloaded += watch.downloaded
            log(f"cold {name}: {watch.seconds:.1f} s, {watch.downloaded / 1e6:.0f} MB in")
        result["cold_total"] = round(total, 1)
        result["cold_downloaded"] = downloaded
    else:
        ws.build(*images)
    warm = Sample()
    steps = []
    for _ in range(settings.repeats):
        with Watch() as watch:
            outcomes = ws.build(*images)
        warm.add(watch.seconds)
        steps.append(len(_built(outcomes)))
        log(f"warm no-op: {watch.seconds:.2f} s, {steps[-1]} images built")
    result["warm"] = warm.as_dict()
    result["warm_images_built"] = max(steps)
    return result


# --- item 3: one pip package added to scipy; a description changed ------------------------

def incremental(ws: Workspace, settings: Settings, log: Log) -> dict[str, Any]:
    original = ws.stack_pip("scipy")
    ids = {name: image_id(ws.ref(name)) for name in ws.buildable()}
    scipy = Sample()
    lock = Sample()
    result: dict[str, Any] = {}
    for package in ADDED[:settings.repeats]:
        ws.edit_stack("scipy", pip=[*original, package])
        started = time.monotonic()
        ws.lock()
        lock.add(time.monotonic() - started)
        if "would_rebuild" not in result:
            plan = imagekit(ws.catalog, "build", *ws.buildable(), "--dry-run", "--json")
            result["would_rebuild"] = [o["image"] for o in json.loads(plan.stdout)
                                       if o["status"] == "planned"]
        outcomes = ws.build("scipy")
        if _built(outcomes) != ["scipy"]:
            raise BenchError(f"adding {package} to scipy rebuilt {_built(outcomes)}")
        scipy.add(_outcome(outcomes, "scipy")["seconds"])
        log(f"incremental +{package}: scipy {scipy.values[-1]:.1f} s")
    result["base_unchanged"] = image_id(ws.ref("base")) == ids["base"]
    result["scipy"] = scipy.as_dict()
    result["lock"] = lock.as_dict()
    result["scipy_size"] = image_size(ws.ref("scipy"))

    # A description (a label) changed: no filesystem layer may change.
    before = layers(ws.ref("scipy"))
    ws.edit_stack("scipy", description="The scientific Python stack, described again.")
    outcomes = ws.build("scipy")
    after = layers(ws.ref("scipy"))
    changed = sum(a != b for a, b in zip(before, after, strict=False))
    result["label_change"] = {"seconds": _outcome(outcomes, "scipy")["seconds"],
                              "layers_changed": changed + abs(len(before) - len(after))}
    ws.edit_stack("scipy", pip=original)
    ws.lock()
    return result


# --- item 4: the same package set three ways ----------------------------------------------

def three_ways(settings: Settings, log: Log) -> dict[str, Any]:
    cold = {way: Sample() for way in ("imagekit", "hpccm", "hand")}
    rebuild = {way: Sample() for way in ("imagekit", "hpccm", "hand")}
    relock = Sample()  # imagekit's `lock scipy` before its rebuild: a user's edit, lock, build
    downloaded = {way: Sample("bytes") for way in ("imagekit", "hpccm", "hand")}
    size: dict[str, int] = {}
    ws = Workspace("bench3")
    packages = PackageSet.of(ws.model(), "scipy")
    ca = str(ws.model().site.ca_bundle)
    ways: dict[str, Callable[[str | None], float]] = {
        "imagekit": lambda added: _imagekit_scipy(ws, added, relock),
        "hpccm": lambda added: _alternative(alternatives.hpccm_recipe, packages, added,
                                            HPCCM, ca),
        "hand": lambda added: _alternative(alternatives.hand_recipe, packages, added, HAND,
                                           ca)}
    refs = {"imagekit": ws.ref("scipy"), "hpccm": HPCCM, "hand": HAND}
    try:
        # One untimed round first: what the first build on an engine does once (the base
        # image's first use, the proxy's and the page cache's first reads of the packages)
        # belongs to nobody's cold build, and would fall on whichever way came first.
        for build in ways.values():
            ws.remove_images()
            remove_images(HPCCM, HAND)
            prune_build_cache()
            build(None)
        log("three ways: one untimed build of each way first")
        for run_no in range(settings.repeats):
            for way, build in ways.items():
                ws.remove_images()
                remove_images(HPCCM, HAND)
                prune_build_cache()
                cold[way].add(_watched(build, downloaded[way]))
                size[way] = image_size(refs[way])
                # The same change for each, on its own warm cache.
                seconds = rebuild[way].add(build(ADDED[run_no % len(ADDED)]))
                log(f"three ways, run {run_no + 1}: {way} cold {cold[way].values[-1]:.1f} s, "
                    f"rebuild {seconds:.1f} s, {size[way] / 1e9:.2f} GB")
        # Keep the last run's images for the start latency comparison (item 5).
        for build in ways.values():
            build(None)
    finally:
        ws.close()
    return {"cold": {w: s.as_dict() for w, s in cold.items()},
            "rebuild": {w: s.as_dict() for w, s in rebuild.items()},
            "relock": relock.as_dict(),
            "downloaded": {w: s.as_dict() for w, s in downloaded.items()},
            "size": size, "packages": {"apt": list(packages.apt), "pip": list(packages.pip)}}


def _watched(build: Callable[[str | None], float], downloaded: Sample) -> float:
    with Watch() as watch:
        build(None)
    downloaded.add(watch.downloaded)
    return watch.seconds


def _imagekit_scipy(ws: Workspace, added: str | None, relock: Sample) -> float:
    """A build of scipy; with a package added, as a user adds it: the stack edited, then
    `imagekit lock scipy` (timed into `relock`) and `imagekit build scipy` (returned)."""
    if added is None:
        ws.build("scipy")
        return 0.0
    original = ws.stack_pip("scipy")
    ws.edit_stack("scipy", pip=[*original, added])
    started = time.monotonic()
    ws.lock("scipy")
    relock.add(time.monotonic() - started)
    started = time.monotonic()
    ws.build("scipy")
    seconds = time.monotonic() - started
    ws.edit_stack("scipy", pip=original)
    ws.lock("scipy")  # the lock it had, byte for byte: the stacks below it stay current
    return seconds


def _alternative(render: Callable[[PackageSet], str], packages: PackageSet, added: str | None,
                 tag: str, ca: str) -> float:
    recipe = render(packages if added is None else packages.plus(added))
    started = time.monotonic()
    alternatives.build(recipe, tag, ca)
    return time.monotonic() - started


# --- item 5: docker run to the first 200 from the server's API ----------------------------

def start_latency(ws: Workspace, settings: Settings, log: Log) -> dict[str, Any]:
    catalog = ws.model()
    images = [catalog.images[n] for n in ws.buildable()]
    jupyter = [i.name for i in images if i.stack.runtime.type == "jupyter" and not i.profiles]
    result: dict[str, Any] = {}
    for name in jupyter:
        ref = ws.ref(name)
        ways = {"imagekit": start_argv(ref, None), "bare": start_argv(ref, "jovyan")}
        if name == "scipy" and image_id(HPCCM):
            ways["hpccm"] = start_argv(HPCCM, "root")
            ways["hand"] = start_argv(HAND, "root")
        samples = {way: Sample() for way in ways}
        for _ in range(settings.starts):  # interleaved: the machine's noise falls on each
            for way, argv in ways.items():
                samples[way].add(first_200(argv))
        result[name] = {w: s.as_dict() for w, s in samples.items()}
        log(f"start {name}: " + ", ".join(f"{w} {s.median:.2f} s" for w, s in samples.items()))
    return result


def start_argv(ref: str, bare_user: str | None) -> list[str]:
    """`docker run` as a user runs the image; bare: `jupyter lab` without the start script."""
    head = ["run", "-d", "-p", "127.0.0.1::8888"]
    if bare_user is None:
        return [*head, ref]
    extra = ["--allow-root"] if bare_user == "root" else []
    return [*head, "--entrypoint", "jupyter", ref, "lab", "--ip=0.0.0.0", "--port=8888",
            "--no-browser", *extra]


def first_200(argv: list[str], env: dict[str, str] | None = None) -> float:
    """`docker run` of argv to the first 200 from the server's API, on the engine `env`
    speaks to (DOCKER_HOST; the host's own by default)."""
    token = secrets.token_hex(16)
    argv = [*argv[:2], "-e", f"JUPYTER_TOKEN={token}", *argv[2:]]
    started = time.monotonic()
    container = docker(*argv, env=env).strip()
    try:
        port = docker("port", container, "8888/tcp", env=env).split(":")[-1].strip()
        url = f"http://127.0.0.1:{port}/api/status"
        seconds = until_200(url, token, started, 120)
        if seconds is not None:
            return seconds
        raise BenchError(f"{' '.join(argv)}: no 200 from {url} in 120 s:\n"
                         + docker("logs", container, check=False, env=env))
    finally:
        docker("rm", "-f", container, check=False, env=env)


def until_200(url: str, token: str, started: float, limit: float,
              alive: Callable[[], bool] = lambda: True) -> float | None:
    """Seconds from `started` to the first 200 from `url` with the token; None when
    `limit` seconds pass first, or when `alive` says the server is gone."""
    while time.monotonic() - started < limit and alive():
        try:
            answer = requests.get(url, headers={"Authorization": f"token {token}"}, timeout=2)
            if answer.status_code == 200:
                return time.monotonic() - started
        except requests.RequestException:
            pass
        time.sleep(0.02)
    return None


# --- item 6: SIF against docker export + mksquashfs ---------------------------------------

def sif(ws: Workspace, settings: Settings, log: Log, image: str = "scipy",
        repeats: int | None = None, bare_too: bool = True) -> dict[str, Any]:
    """imagekit's native conversion (the catalog's default, gzip) against the bare way, and
    the same conversion with `sif: {compression: zstd}` (Apptainer >= 1.4 only)."""
    mine, bare, zstd = Sample(), Sample(), Sample()
    sizes: dict[str, int] = {}
    phases: dict[str, list[float]] = {"export_s": [], "squashfs_s": [], "assemble_s": []}
    zstd_squashfs: list[float] = []
    original = ws.catalog.read_text()

    def convert() -> dict[str, Any]:
        for sidecar in (ws.dir / "dist").glob(f"{image}_*.sif*"):
            sidecar.unlink()
        result = imagekit(ws.catalog, "build", image, "--format", "sif", "--sif-method",
                          "native", "--json")
        [report] = json.loads(result.stdout)["sif"]
        return dict(report)

    for _ in range(repeats or settings.repeats):
        report = convert()
        mine.add(report["total_s"])
        sizes["imagekit"] = report["size"]
        for phase, values in phases.items():
            values.append(report[phase])
        log(f"sif {image}: imagekit {mine.values[-1]:.1f} s")
        try:
            ws.catalog.write_text(original + "sif: {compression: zstd}\n")
            report = convert()
        finally:
            ws.catalog.write_text(original)
        zstd.add(report["total_s"])
        zstd_squashfs.append(report["squashfs_s"])
        sizes["zstd"] = report["size"]
        log(f"sif {image}: imagekit, {report['compression']}: {zstd.values[-1]:.1f} s")
        if bare_too:
            seconds, sizes["bare"] = _bare_sif(ws.ref(image))
            bare.add(seconds)
            log(f"sif {image}: bare {seconds:.1f} s")
    return {"imagekit": mine.as_dict(), "bare": bare.as_dict(), "zstd": zstd.as_dict(),
            "size": sizes,
            "phases": {p: round(statistics.median(v), 1) for p, v in phases.items()},
            "zstd_squashfs_s": round(statistics.median(zstd_squashfs), 1)}


def _bare_sif(ref: str) -> tuple[float, int]:
    """What a user does by hand: export the container's filesystem, mksquashfs it (gzip)."""
    work = Path(tempfile.mkdtemp(prefix="imagekit-bench-bare-"))
    try:
        started = time.monotonic()
        container = docker("create", ref, "/bin/true").strip()
        (work / "rootfs").mkdir()
        export = subprocess.Popen([docker_cli(), "export", container],
                                  stdout=subprocess.PIPE)
        subprocess.run(["tar", "-x", "-p", "--numeric-owner", "-C", str(work / "rootfs")],
                       stdin=export.stdout, check=True)
        if export.wait() != 0:
            raise BenchError(f"docker export of {ref} failed")
        docker("rm", "-f", container)
        run(["mksquashfs", str(work / "rootfs"), str(work / "bare.sqfs"), "-noappend",
             "-comp", "gzip", "-no-progress", "-quiet"])
        return time.monotonic() - started, (work / "bare.sqfs").stat().st_size
    finally:
        shutil.rmtree(work, ignore_errors=True)


# --- item 7: render as a whole process ----------------------------------------------------

def render(ws: Workspace, settings: Settings, log: Log) -> dict[str, Any]:
    whole = Sample()
    for _ in range(settings.renders):
        started = time.monotonic()
        imagekit(ws.catalog, "render", "--all")
        whole.add(time.monotonic() - started)
    started = time.monotonic()
    run([sys.executable, "-c", "import imagekit.cli"])
    imports = time.monotonic() - started
    log(f"render --all: {whole.median:.2f} s (importing the CLI alone: {imports:.2f} s)")
    return {"render": whole.as_dict(), "import_cli": round(imports, 3)}


# --- item 8: imagekit build pytorch-cuda ---------------------------------------------------

def pytorch_cuda(ws: Workspace, cold: dict[str, Any], log: Log) -> dict[str, Any]:
    ref = ws.ref("pytorch-cuda")
    result: dict[str, Any] = {"cold": cold.get("images", {}).get("pytorch-cuda"),
                              "tags": sorted(t.rpartition(":")[2] for t in
                                             docker("image", "inspect", "-f",
                                                    "{{range .RepoTags}}{{.}} {{end}}",
                                                    ref).split())}
    # Its time and size (the bare way's comparison is item 6's, on scipy).
    result["sif"] = sif(ws, Settings(), log, image="pytorch-cuda", repeats=1, bare_too=False)
    original = ws.stack_pip("pytorch-cuda")
    ws.edit_stack("pytorch-cuda", pip=[*original, "tabulate"])
    ws.lock()
    with Watch() as watch:
        outcomes = ws.build("pytorch-cuda")
    result["rebuild_above_torch"] = {"seconds": round(watch.seconds, 1),
                                     "downloaded": watch.downloaded,
                                     "built": _built(outcomes)}
    log(f"pytorch-cuda rebuild above torch: {watch.seconds:.1f} s, "
        f"{watch.downloaded / 1e6:.0f} MB in")
    ws.edit_stack("pytorch-cuda", pip=original)
    ws.lock()
    return result
