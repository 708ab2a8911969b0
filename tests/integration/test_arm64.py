"""arm64 beside amd64 on this amd64 machine: the base bootstrapped for arm64 under QEMU, the
root image built FROM it with BuildKit's --platform, smoke-tested and converted to a SIF
whose partition says arm64 — and amd64's base built beside it, so the two can be compared."""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from imagekit.engine.client import Engine
from imagekit.model import arch
from imagekit.publish.registry import Registry
from imagekit.published.catalog import PublishedImage, read
from imagekit.resolve import load_catalog
from imagekit.sif import parse_list
from tests.integration import apptainer as ap
from tests.integration import background, suite
from tests.integration.conftest import ROOT, imagekit
from tests.integration.registry import fresh_registry
from tests.integration.runners import Runner, own_engine

pytestmark = [pytest.mark.integration, pytest.mark.arm64]

NAMESPACE = "arm64"
TIMES: dict[str, float] = {}
EM_AARCH64 = 183  # ELF e_machine of AArch64


@dataclass
class Arm64:
    catalog: Path
    outcomes: dict[str, Any]
    engine: Runner | None  # a dockerd of the module's own; None under Podman (the suite's)
    registry: str  # the address of the module's own registry, which the catalog names
    stop: Callable[[], None] = lambda: None  # that registry, once started

    @property
    def env(self) -> dict[str, str]:
        return self.engine.env if self.engine else {}

    def ref(self, image: str, suffix: str = "-arm64") -> str:
        return suite.ref(image, NAMESPACE, registry=self.registry) + suffix


def _timed(step: str, *args: str, catalog: Path, env: dict[str, str]) -> Any:
    started = time.monotonic()
    result = imagekit(*args, catalog=catalog, check=False, timeout=5400, env=env)
    TIMES[step] = round(time.monotonic() - started, 1)
    if "--json" in args and result.stdout.strip():
        return json.loads(result.stdout) | {"exit": result.returncode, "stderr": result.stderr}
    return {"exit": result.returncode, "stdout": result.stdout, "stderr": result.stderr}


def beside(folder: Path) -> Arm64:
    """The module's setup, beside the rest of the suite (tests/integration/background.py):
    on a Docker engine of its own (under Podman, the suite's: it has no daemon, so its
    builds are the setup's own processes), which gets the suite's one amd64 base, base's lock
    for both architectures, the arm64 base bootstrapped under QEMU, and base built for each
    architecture with its SIF, and tested."""
    engine = own_engine("arm64", folder / "engine", 43)
    address = suite.free_address()
    found: Arm64 | None = None
    try:
        catalog = suite.copy_project(folder, NAMESPACE, registry=address, quick_sifs=True)
        catalog.write_text(catalog.read_text()
                           .replace("  - stack: base\n",  # its SIF is published too
                                    "  - stack: base\n    formats: [docker, sif]\n")
                           .replace("\nplatforms: [linux/amd64]\n",
                                    "\nplatforms: [linux/amd64, linux/arm64]\n"))
        found = Arm64(catalog, {}, engine, address)
        o, env = found.outcomes, found.env
        # base's lock must now hold for arm64 too: resolved for both, the same pins.
        o["lock"] = _timed("lock base for amd64 and arm64", "lock", "base", catalog=catalog,
                           env=env)
        o["base"] = _timed("arm64: base (debootstrap under QEMU)", "base", "--platform",
                           "linux/arm64", catalog=catalog, env=env)
        # amd64's first, on this machine's own architecture, as `imagekit build` orders the
        # catalog's platforms: the arm64 build under QEMU unpacks the bytecode of base's
        # pure-Python distributions that amd64's compiled (the cache mount is shared).
        for name in ("amd64", "arm64"):
            o[f"build-{name}"] = _timed(
                f"{name}: build base (+ SIF)", "build", "base", "--platform", f"linux/{name}",
                "--format", "docker", "--format", "sif", "--sif-method", "native", "--force",
                "--json", catalog=catalog, env=env)
            o[f"test-{name}"] = _timed(f"{name}: test base", "test", "base", "--platform",
                                       f"linux/{name}", "--json", catalog=catalog, env=env)
        # Both architectures published into the module's own registry, which runs until
        # the module's teardown.
        registries = fresh_registry(folder / "registry", address)
        next(registries)

        def stop() -> None:
            next(registries, None)

        found.stop = stop
        o["publish"] = _timed("publish base (amd64 + arm64, images and SIFs)", "publish",
                              "base", "--json", catalog=catalog, env=env)
        return found
    except BaseException:
        if found is not None:
            found.stop()
        if engine is not None:
            engine.stop()
        raise


@pytest.fixture(scope="module")
def arm64(client: Any) -> Iterator[Arm64]:
    found: Arm64 | None = None
    try:
        found = background.result(__name__)
        yield found
    finally:
        if found is not None:
            found.stop()  # its registry
            if found.engine is not None:
                found.engine.stop()  # its images and data with it
            else:
                for image in client.images.list():
                    if any(f"/{NAMESPACE}/" in tag for tag in image.tags):
                        client.images.remove(image.id, force=True)
        background.finish(__name__)


@pytest.fixture(scope="module")
def engine(arm64: Arm64, client: Any) -> Any:
    """The engine the module built on: its own dockerd's API (the suite's under Podman)."""
    return arm64.engine.client if arm64.engine else client


def test_one_lock_is_resolved_for_both_architectures(arm64: Arm64) -> None:
    assert arm64.outcomes["lock"]["exit"] == 0, arm64.outcomes["lock"]["stderr"]
    lock = (arm64.catalog.parent / "stacks/base.lock").read_text()
    assert "x86_64-manylinux_2_36 and\n# aarch64-manylinux_2_36" in lock
    # Its pins are the shipped amd64 lock's: the same packages on both architectures.
    pins = [line for line in lock.splitlines() if "==" in line]
    assert pins == [line for line in (ROOT / "stacks/base.lock").read_text().splitlines()
                    if "==" in line]


def test_the_arm64_base_is_bootstrapped_and_is_arm64(arm64: Arm64, engine: Any) -> None:
    assert arm64.outcomes["base"]["exit"] == 0, arm64.outcomes["base"]["stderr"]
    assert "imagekit/debian:bookworm-arm64: bootstrapped" in arm64.outcomes["base"]["stdout"] \
        or "imagekit/debian:bookworm-arm64: present" in arm64.outcomes["base"]["stdout"]
    base = engine.images.get("imagekit/debian:bookworm-arm64")
    assert (base.attrs["Architecture"], base.attrs["Os"]) == ("arm64", "linux")
    # The amd64 base is untouched by the arm64 one.
    assert engine.images.get("imagekit/debian:bookworm").attrs["Architecture"] == "amd64"


def test_the_root_image_is_built_for_arm64_from_the_arm64_base(arm64: Arm64,
                                                               engine: Any) -> None:
    report = arm64.outcomes["build-arm64"]
    assert report["exit"] == 0, report["stderr"][-3000:]
    (outcome,) = report["images"]
    assert (outcome["platform"], outcome["status"]) == ("linux/arm64", "built")
    assert outcome["ref"] == arm64.ref("base")
    image = engine.images.get(arm64.ref("base"))
    assert image.attrs["Architecture"] == "arm64"
    machine = engine.containers.run(image.id, ["python3", "-c",
                                               "import platform; print(platform.machine())"],
                                    entrypoint=[], remove=True)
    assert machine.decode().strip() == "aarch64"
    # amd64's, built in the same run, is another image under the unsuffixed tag.
    amd64 = engine.images.get(arm64.ref("base", suffix=""))
    assert amd64.attrs["Architecture"] == "amd64" and amd64.id != image.id


def test_the_arm64_image_passes_the_same_checks_as_amd64s(arm64: Arm64) -> None:
    for name in ("amd64", "arm64"):
        report = arm64.outcomes[f"test-{name}"]
        failed = [f"{r['name']}: {r['evidence']}" for r in report["results"] if not r["ok"]]
        assert report["exit"] == 0 and not failed, (name, failed, report["stderr"][-2000:])
    names = {r["name"] for r in arm64.outcomes["test-arm64"]["results"]}
    assert names == {r["name"] for r in arm64.outcomes["test-amd64"]["results"]}
    kernel = [r for r in arm64.outcomes["test-arm64"]["results"] if "kernel" in r["name"]]
    assert kernel and all(r["ok"] for r in kernel)


def test_the_arm64_sif_says_arm64_and_holds_aarch64_programs(arm64: Arm64,
                                                             tmp_path: Path) -> None:
    (sif,) = arm64.outcomes["build-arm64"]["sif"]
    path = Path(sif["path"])
    assert path.name == "base_latest_arm64.sif" and sif["platform"] == "linux/arm64"
    listing = subprocess.run(["siftool", "list", str(path)], capture_output=True, text=True,
                             check=True).stdout
    (fs,) = [o for o in parse_list(listing) if o.kind.startswith("FS")]
    assert fs.kind.endswith("/arm64)"), fs.kind
    squashfs = ap.system_partition(path, tmp_path)
    python = subprocess.run(["unsquashfs", "-cat", str(squashfs), "usr/bin/python3.11"],
                            capture_output=True, check=True).stdout
    assert python[:4] == b"\x7fELF" and int.from_bytes(python[18:20], "little") == EM_AARCH64
    (amd64,) = arm64.outcomes["build-amd64"]["sif"]
    assert Path(amd64["path"]).name == "base_latest.sif"


@dataclass
class Release:
    report: dict[str, Any]
    entry: PublishedImage
    dist: Path


@pytest.fixture(scope="module")
def release(arm64: Arm64) -> Release:
    """`imagekit publish base` of the two architectures into the module's own registry (in
    the module's setup beside the suite)."""
    report = arm64.outcomes["publish"]
    assert report["exit"] == 0, report["stderr"][-3000:]
    dist = arm64.catalog.parent / "dist"
    return Release(report, read(dist / "catalog.json").image("base"), dist)


def test_publish_puts_one_index_of_both_architectures_in_the_catalog_and_exports(
        arm64: Arm64, release: Release, engine: Any) -> None:
    catalog = load_catalog(arm64.catalog)
    registry = Registry(catalog)
    entry = release.entry
    # The catalog lists each architecture's tested image and digest, and the index's.
    images = Engine(engine)
    ids = {p: images.image(catalog.ref("base", platform=p)) for p in catalog.platforms}
    assert [(p.platform, p.image_id) for p in entry.platforms] == [
        (p, info.id if info else None) for p, info in ids.items()]
    assert all(p.tested.status == "passed" and p.sif and p.sbom for p in entry.platforms)
    digest, index = registry.manifest(entry.repository, "latest") or ("", {})
    assert digest == entry.digest and entry.reference == f"{entry.repository}@{digest}"
    assert {m["platform"]["architecture"]: m["digest"] for m in index["manifests"]} == {
        arch(p.platform): p.digest for p in entry.platforms}
    # Every export names the index, never one architecture's manifest.
    texts = "".join(f.read_text() for f in (release.dist / "exports").iterdir())
    assert entry.reference in texts
    assert not any(p.digest in texts for p in entry.platforms)
    # `docker pull` by the index's digest gives each platform its own tested image. Docker
    # 20.10 keeps one image per reference: REPOSITORY@INDEX names the image pulled first
    # until it is removed (an engine on each architecture holds only its own).
    for platform, info in ids.items():
        assert info is not None
        images.untag(entry.reference)
        engine.images.pull(entry.repository, tag=entry.digest, platform=platform)
        assert engine.images.get(entry.reference).id == info.id, platform


def test_verify_checks_the_index_and_each_architecture(arm64: Arm64,
                                                        release: Release) -> None:
    result = imagekit("verify", "base", "--json", catalog=arm64.catalog, check=False,
                      env=arm64.env)
    found = {f["check"]: f for f in json.loads(result.stdout)["findings"]}
    wanted = ["index", *(f"{check} ({a})" for a in ("amd64", "arm64")
                         for check in ("digest", "sbom", "test record", "sif",
                                       "provenance"))]
    assert [c for c in wanted if not found.get(c, {}).get("ok")] == [], found
    # Published without the site's cosign key: the one finding that says so.
    assert not found["signature"]["ok"] and result.returncode == 1


def test_apptainer_takes_its_own_architectures_sif_from_the_one_reference(
        release: Release, sid_root: Path) -> None:
    """Apptainer 1.4.5 resolves an index of SIF manifests with the host's platform: on this
    amd64 machine the catalog's one oras:// reference gives amd64's SIF; arm64's is in the
    same index, and its own digest gives it."""
    sif = release.entry.sif
    assert sif is not None and sif.reference == f"oras://{sif.repository}@{sif.digest}"
    runner = ap.Apptainer(sid_root)
    by_arch = {arch(p.platform): p for p in release.entry.platforms}
    amd64, arm64 = (by_arch[a].sif for a in ("amd64", "arm64"))
    assert amd64 is not None and arm64 is not None
    try:
        with ap.fuse_for_user():
            runner.run("apptainer", "pull", "--no-https", "--force", "index.sif",
                       sif.reference, timeout=600)
            runner.run("apptainer", "pull", "--no-https", "--force", "arm64.sif",
                       arm64.reference, timeout=600)
        home = runner.home
        assert hashlib.sha256((home / "index.sif").read_bytes()).hexdigest() == amd64.sha256
        assert hashlib.sha256((home / "arm64.sif").read_bytes()).hexdigest() == arm64.sha256
    finally:
        for name in ("index.sif", "arm64.sif"):
            (runner.home / name).unlink(missing_ok=True)


@pytest.mark.arm64_stacks
def test_scipy_is_built_and_tested_for_arm64_from_the_arm64_base(arm64: Arm64, engine: Any,
                                                                  tmp_path: Path) -> None:
    """The issue's second image under emulation (outside CI: `make test-arm64`): scipy's
    lock holds for aarch64, its numpy runs there, the checks pass, its SIF says arm64."""
    locked = _timed("lock scipy for amd64 and arm64", "lock", "scipy", catalog=arm64.catalog,
                    env=arm64.env)
    assert locked["exit"] == 0, locked["stderr"]
    built = _timed("arm64: build scipy (+ SIF)", "build", "scipy", "--platform", "linux/arm64",
                   "--format", "docker", "--format", "sif", "--sif-method", "native", "--json",
                   catalog=arm64.catalog, env=arm64.env)
    assert built["exit"] == 0, built["stderr"][-3000:]
    tested = _timed("arm64: test scipy", "test", "scipy", "--platform", "linux/arm64", "--json",
                    catalog=arm64.catalog, env=arm64.env)
    failed = [f"{r['name']}: {r['evidence']}" for r in tested["results"] if not r["ok"]]
    assert tested["exit"] == 0 and not failed, (failed, tested["stderr"][-2000:])
    out = engine.containers.run(arm64.ref("scipy"), ["python3", "-c",
                                "import platform, numpy, scipy.linalg as la; "
                                "print(platform.machine(), la.det(numpy.eye(3)))"],
                                entrypoint=[], remove=True).decode().split()
    assert out == ["aarch64", "1.0"], out
    (sif,) = [s for s in built["sif"] if s["image"] == "scipy"]
    assert Path(sif["path"]).name == "scipy_latest_arm64.sif"
    listing = subprocess.run(["siftool", "list", sif["path"]], capture_output=True, text=True,
                             check=True).stdout
    (fs,) = [o for o in parse_list(listing) if o.kind.startswith("FS")]
    assert fs.kind.endswith("/arm64)"), fs.kind


@pytest.mark.arm64_stacks
def test_pytorch_cuda_is_built_for_arm64_from_pypis_aarch64_wheels(arm64: Arm64,
                                                                    engine: Any) -> None:
    """Grace Hopper's case (outside CI: `make test-arm64`): PyPI has torch's CUDA wheels for
    aarch64, so pytorch-cuda's one lock holds for both architectures, and its arm64 image
    imports torch, is tagged with the CUDA it carries and passes its checks under QEMU."""
    locked = _timed("lock pytorch-cuda for amd64 and arm64", "lock", "pytorch-cuda",
                    catalog=arm64.catalog, env=arm64.env)
    assert locked["exit"] == 0, locked["stderr"]
    built = _timed("arm64: build pytorch-cuda", "build", "pytorch-cuda", "--platform",
                   "linux/arm64", "--format", "docker", "--json", catalog=arm64.catalog,
                   env=arm64.env)
    assert built["exit"] == 0, built["stderr"][-3000:]
    tested = _timed("arm64: test pytorch-cuda", "test", "pytorch-cuda", "--platform",
                    "linux/arm64", "--json", catalog=arm64.catalog, env=arm64.env)
    failed = [f"{r['name']}: {r['evidence']}" for r in tested["results"] if not r["ok"]]
    assert tested["exit"] == 0 and not failed, (failed, tested["stderr"][-2000:])
    ref = arm64.ref("pytorch-cuda")
    # One OpenMP thread, as imagekit runs it here: QEMU 7.2 hangs in libgomp's thread pool.
    out = engine.containers.run(ref, ["python3", "-c",
                                "import platform, torch; "
                                "print(platform.machine(), torch.version.cuda)"],
                                entrypoint=[], environment={"OMP_NUM_THREADS": "1"},
                                remove=True).decode().split()
    assert out[0] == "aarch64" and len(out) == 2, out
    tags = {t.rpartition(":")[2] for t in engine.images.get(ref).tags}
    assert f"cuda-{out[1]}-arm64" in tags, tags
