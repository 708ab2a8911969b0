"""arm64 beside amd64 on this amd64 machine: the base bootstrapped for arm64 under QEMU, the
root image built FROM it with BuildKit's --platform, smoke-tested and converted to a SIF
whose partition says arm64 — and amd64's base built beside it, so the two can be compared."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from imagekit.engine.client import Engine
from imagekit.publish.registry import Registry
from imagekit.resolve import load_catalog
from imagekit.schema import Platform
from imagekit.sif import parse_list
from tests.integration import apptainer as ap
from tests.integration.conftest import ROOT, imagekit
from tests.integration.registry import fresh_registry

pytestmark = [pytest.mark.integration, pytest.mark.arm64]

NAMESPACE = "arm64"
TIMES: dict[str, float] = {}
EM_AARCH64 = 183  # ELF e_machine of AArch64


@dataclass
class Arm64:
    catalog: Path
    outcomes: dict[str, Any]

    def ref(self, image: str, suffix: str = "-arm64") -> str:
        return f"127.0.0.1:5055/{NAMESPACE}/{image}:latest{suffix}"


def _timed(step: str, *args: str, catalog: Path) -> Any:
    started = time.monotonic()
    result = imagekit(*args, catalog=catalog, check=False, timeout=5400)
    TIMES[step] = round(time.monotonic() - started, 1)
    if "--json" in args and result.stdout.strip():
        return json.loads(result.stdout) | {"exit": result.returncode, "stderr": result.stderr}
    return {"exit": result.returncode, "stdout": result.stdout, "stderr": result.stderr}


@pytest.fixture(scope="module")
def arm64(tmp_path_factory: pytest.TempPathFactory, client: Any) -> Iterator[Arm64]:
    root = tmp_path_factory.mktemp("arm64")
    for name in ("stacks", "profiles"):
        shutil.copytree(ROOT / name, root / name)
    catalog = root / "catalog.yaml"
    catalog.write_text((ROOT / "catalog.yaml").read_text()
                       .replace("namespace: imagekit",
                                f"namespace: {NAMESPACE}\nplatforms: [linux/amd64, linux/arm64]"))
    o: dict[str, Any] = {}
    try:
        o["base"] = _timed("arm64: base (debootstrap under QEMU)", "base", "--platform",
                           "linux/arm64", catalog=catalog)
        for arch in ("amd64", "arm64"):
            o[f"build-{arch}"] = _timed(
                f"{arch}: build base (+ SIF)", "build", "base", "--platform", f"linux/{arch}",
                "--format", "docker", "--format", "sif", "--sif-method", "native", "--force",
                "--json", catalog=catalog)
            o[f"test-{arch}"] = _timed(f"{arch}: test base", "test", "base", "--platform",
                                       f"linux/{arch}", "--json", catalog=catalog)
        yield Arm64(catalog, o)
    finally:
        for image in client.images.list():
            if any(f"/{NAMESPACE}/" in tag for tag in image.tags):
                client.images.remove(image.id, force=True)
        shutil.rmtree(root, ignore_errors=True)


def test_the_arm64_base_is_bootstrapped_and_is_arm64(arm64: Arm64, client: Any) -> None:
    assert arm64.outcomes["base"]["exit"] == 0, arm64.outcomes["base"]["stderr"]
    assert "imagekit/debian:bookworm-arm64: bootstrapped" in arm64.outcomes["base"]["stdout"] \
        or "imagekit/debian:bookworm-arm64: present" in arm64.outcomes["base"]["stdout"]
    base = client.images.get("imagekit/debian:bookworm-arm64")
    assert (base.attrs["Architecture"], base.attrs["Os"]) == ("arm64", "linux")
    # The amd64 base is untouched by the arm64 one.
    assert client.images.get("imagekit/debian:bookworm").attrs["Architecture"] == "amd64"


def test_the_root_image_is_built_for_arm64_from_the_arm64_base(arm64: Arm64,
                                                               client: Any) -> None:
    report = arm64.outcomes["build-arm64"]
    assert report["exit"] == 0, report["stderr"][-3000:]
    (outcome,) = report["images"]
    assert (outcome["platform"], outcome["status"]) == ("linux/arm64", "built")
    assert outcome["ref"] == arm64.ref("base")
    image = client.images.get(arm64.ref("base"))
    assert image.attrs["Architecture"] == "arm64"
    machine = client.containers.run(image.id, ["python3", "-c",
                                               "import platform; print(platform.machine())"],
                                    entrypoint=[], remove=True)
    assert machine.decode().strip() == "aarch64"
    # amd64's, built in the same run, is another image under the unsuffixed tag.
    amd64 = client.images.get(arm64.ref("base", suffix=""))
    assert amd64.attrs["Architecture"] == "amd64" and amd64.id != image.id


def test_the_arm64_image_passes_the_same_checks_as_amd64s(arm64: Arm64) -> None:
    for arch in ("amd64", "arm64"):
        report = arm64.outcomes[f"test-{arch}"]
        failed = [f"{r['name']}: {r['evidence']}" for r in report["results"] if not r["ok"]]
        assert report["exit"] == 0 and not failed, (arch, failed, report["stderr"][-2000:])
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


def test_one_index_gives_each_architecture_its_own_image(arm64: Arm64, client: Any,
                                                         tmp_path: Path) -> None:
    """Both images pushed by digest, then one index under `latest`: `docker pull` for each
    platform by the index's digest gets that platform's tested image."""
    catalog = load_catalog(arm64.catalog)
    engine = Engine(client)
    registries = fresh_registry(tmp_path / "registry")
    next(registries)
    try:
        registry = Registry(catalog)
        repository = catalog.repository("base")
        ids: dict[str, str] = {}
        members: list[tuple[Platform, str]] = []
        for platform in catalog.platforms:
            info = engine.image(catalog.ref("base", platform=platform))
            assert info is not None
            ids[platform] = info.id
            pushed = registry.push_image(engine, info.id, repository,
                                         f"id-{info.id.removeprefix('sha256:')[:12]}", [])
            members.append((platform, pushed.digest))
        index = registry.push_index(repository, members, ["latest"])
        digest, listed = registry.manifest(repository, "latest") or ("", {})
        assert digest == index.digest
        assert {m["platform"]["architecture"] for m in listed["manifests"]} == {"amd64",
                                                                                "arm64"}
        for platform in catalog.platforms:
            # Docker 20.10 keeps one image per reference: REPOSITORY@INDEX names the image
            # pulled first until it is removed, whatever a later pull for another platform
            # got (an engine on each architecture holds only its own).
            engine.untag(f"{repository}@{index.digest}")
            client.images.pull(repository, tag=index.digest, platform=platform)
            pulled = client.images.get(f"{repository}@{index.digest}")
            assert pulled.id == ids[platform], platform
    finally:
        next(registries, None)
