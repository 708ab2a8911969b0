"""Given the catalog, when I build, then the engine holds tagged, labelled, cached images."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker
import pytest

from imagekit.engine.emulation import host_platform
from imagekit.model import arch
from tests.integration import suite
from tests.integration.conftest import imagekit
from tests.integration.mirror import Mirror

pytestmark = pytest.mark.integration

REF = suite.ref("{}")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    suite.copy_project(tmp_path)
    return tmp_path


def test_base_and_scipy_build_parents_first(build: Callable[..., Any]) -> None:
    outcomes = build("scipy")
    assert [o["image"] for o in outcomes] == ["base", "scipy"]
    assert all(o["status"] in ("built", "cached") for o in outcomes), outcomes


def test_an_unchanged_image_is_not_rebuilt(build: Callable[..., Any]) -> None:
    build("scipy")
    again = json.loads(imagekit("build", "scipy", "--format", "docker", "--json").stdout)["images"]
    assert [o["status"] for o in again] == ["cached", "cached"]
    assert all(o["seconds"] < 10 for o in again)


@pytest.mark.docker_engine  # names Docker's BuildKit in the plan
def test_dry_run_prints_the_plan(build: Callable[..., Any]) -> None:
    build("scipy")
    out = imagekit("build", "pytorch", "scipy-hpc", "--dry-run").stdout
    lines = [line.split()[1] for line in out.splitlines() if re.match(r"\s*\d+\.", line)]
    assert lines == ["base", "scipy", "scipy-hpc", "pytorch"]
    assert "builder: BuildKit" in out


def test_labels_record_stack_parent_and_recipe(build: Callable[..., Any], client: Any) -> None:
    build("scipy")
    base, scipy = client.images.get(REF.format("base")), client.images.get(REF.format("scipy"))
    labels = scipy.labels
    assert labels["io.imagekit.stack"] == "scipy"
    assert labels["io.imagekit.parent-digest"] == base.id
    assert re.fullmatch(r"[0-9a-f]{64}", labels["io.imagekit.recipe-hash"])
    assert re.fullmatch(r"[0-9a-f]{64}", labels["io.imagekit.cache-key"])
    assert labels["org.opencontainers.image.title"] == "scipy"
    assert labels["io.imagekit.version"]


def test_doctor_and_build_name_the_engine_its_version_builder_and_image_store(
        build: Callable[..., Any], client: Any, project: Path) -> None:
    build("base")
    # A namespace of its own: what it builds is built now, by this code (an image built
    # before imagekit recorded its engine has no label to read), and moves no other test's tag.
    catalog = _tiny(project)
    catalog.write_text(suite.catalog_text("identity", source=catalog))
    try:
        doctor = json.loads(imagekit("doctor", "--json", check=False, catalog=catalog).stdout)
        built = json.loads(imagekit("build", "tiny", "--format", "docker", "--json",
                                    catalog=catalog).stdout)
        engine = built["engine"]
        # As the engine itself says, through its own API.
        assert engine["version"] == client.version()["Version"]
        info = client.info()
        assert f"({info['Driver']}" in engine["image_store"]
        containerd = ["driver-type", "io.containerd.snapshotter.v1"] in (
            info.get("DriverStatus") or [])
        assert engine["image_store"].startswith("containerd" if containerd else
                                                ("classic", "containers/storage"))
        assert engine["builder"].startswith(("BuildKit via", "buildah via"))
        assert engine in doctor["engines"]
        # What it built says who built it, in the words doctor uses.
        for name in ("base", "tiny"):
            labels = client.images.get(suite.ref(name, "identity")).labels
            assert labels["io.imagekit.built-by"] == (
                f"{engine['engine']} {engine['version']}, {engine['builder']}, "
                f"{engine['image_store']}")
    finally:
        for name in ("tiny", "base"):
            for image in client.images.list(suite.repository(name, "identity")):
                client.images.remove(image.id, force=True)


def test_tags_are_computed_inside_the_image(build: Callable[..., Any], client: Any) -> None:
    outcome = {o["image"]: o for o in build("scipy")}["scipy"]
    tags = [t.rpartition(":")[2] for t in client.images.get(REF.format("scipy")).tags]
    assert "latest" in tags
    assert any(re.fullmatch(r"python-3\.11\.\d+", t) for t in tags), tags
    assert any(re.fullmatch(r"numpy-\d+\.\d+\.\d+", t) for t in tags), tags
    assert any(re.fullmatch(r"\d{4}-\d{2}-\d{2}", t) for t in tags), tags
    assert outcome["size"] > 0


def test_image_runs_as_jovyan_with_the_site_ca(build: Callable[..., Any], client: Any) -> None:
    build("scipy")
    out = client.containers.run(REF.format("scipy"), ["-c", "id -un; id -u; echo $PIP_CERT"],
                                entrypoint=["/bin/bash"], remove=True).decode()
    assert out.split() == ["jovyan", "1000", "/etc/imagekit/ca-bundle.crt"]


def test_a_failed_build_moves_no_tag(build: Callable[..., Any], client: Any,
                                     project: Path) -> None:
    build("scipy")
    before = client.images.get(REF.format("scipy")).id
    stack = project / "stacks/scipy.yaml"
    stack.write_text(stack.read_text().replace(
        "  - ipyparallel\n", "  - ipyparallel\n  - imagekit-no-such-package-anywhere\n"))
    # Unlocked (a stale lock would stop it before building): the pip step fails halfway.
    (project / "stacks/scipy.lock").unlink()
    result = imagekit("build", "scipy", "--plain", catalog=project / "catalog.yaml",
                      check=False)
    assert result.returncode == 1
    assert "build failed at" in result.stdout and "uv pip install" in result.stdout
    assert "imagekit-no-such-package-anywhere" in result.stdout
    assert client.images.get(REF.format("scipy")).id == before


def test_bad_input_builds_nothing(project: Path, client: Any) -> None:
    stack = project / "stacks/scipy.yaml"
    stack.write_text(stack.read_text().replace("  - numpy\n", "  - 'numpy; rm -rf /'\n"))
    result = imagekit("build", "scipy", catalog=project / "catalog.yaml", check=False)
    assert result.returncode == 2
    assert "stacks/scipy.yaml" in result.stderr and "pip[0]" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


TINY = """\
description: A tiny stack for builder tests.
extends: base
pip:
  - six
env:
  TINY_GREETING: hello from tiny
files:
  - {src: tiny/hello.txt, dest: /opt/tiny/hello.txt}
checks:
  imports: [six]
"""


def _tiny(project: Path, extra_site: str = "") -> Path:
    (project / "stacks/tiny.yaml").write_text(TINY)
    (project / "stacks/files/tiny").mkdir()
    (project / "stacks/files/tiny/hello.txt").write_text("hello\n")
    catalog = project / "catalog.yaml"
    text = catalog.read_text().replace("  - stack: pyspark\n",
                                       "  - stack: pyspark\n  - stack: tiny\n")
    catalog.write_text(text)
    if extra_site:
        mirrors = project / "profiles/mirrors.yaml"
        mirrors.write_text(mirrors.read_text() + extra_site)
    return catalog


@pytest.mark.docker_engine  # the docker SDK's classic builder: Docker's alone
def test_the_classic_builder_builds_too(build: Callable[..., Any], client: Any,
                                        project: Path) -> None:
    build("base")
    catalog = _tiny(project)
    # Its own namespace: the builder is part of the cache key, so the classic builder
    # builds base again, and must not move the tag every other test builds on.
    catalog.write_text(suite.catalog_text("classic", source=catalog))
    result = imagekit("build", "tiny", "--builder", "classic", "--plain", "--force",
                      catalog=catalog)
    assert "classic builder" in result.stdout
    ref = suite.ref("{}", "classic")
    out = client.containers.run(ref.format("tiny"), ["-c", "cat /opt/tiny/hello.txt; "
                                "python -c 'import six; print(six.__name__)'; "
                                "echo $TINY_GREETING"],
                                entrypoint=["/bin/bash"], remove=True).decode()
    assert out.split("\n")[:3] == ["hello", "six", "hello from tiny"]
    for name in ("tiny", "base"):
        for image in client.images.list(suite.repository(name, "classic")):
            client.images.remove(image.id, force=True)


def test_base_is_bootstrapped_when_it_cannot_be_pulled(project: Path, client: Any) -> None:
    """An air-gapped site: no registry has the base, debootstrap makes it, from a site's
    mirror that fails one download in passing (debootstrap gives up on it; imagekit runs it
    again)."""
    ref = "imagekit-test/debian:bootstrap"
    mirror = Mirror("", "", fail_once="/coreutils_").start()
    catalog = project / "catalog.yaml"
    catalog.write_text(catalog.read_text()
                       .replace("image: imagekit/debian:bookworm", f"image: {ref}")
                       .replace("mirror: http://deb.debian.org/debian",
                                f"mirror: http://127.0.0.1:{mirror.port}/debian"))
    with contextlib.suppress(docker.errors.ImageNotFound):
        client.images.remove(ref, force=True)
    try:
        first = imagekit("base", catalog=catalog).stdout
        # This machine's own architecture, named since bases are bootstrapped per platform.
        machine = arch(host_platform())
        assert "could not pull" in first
        assert f"debootstrap --arch={machine} --variant=minbase bookworm" in first
        assert "debootstrap: Couldn't download packages: coreutils; trying again (2 of 3)" \
            in first, first
        assert first.strip().endswith("bootstrapped")
        # The second run fetched only what the first had not: coreutils once more.
        debs = [h.path.rpartition("/")[2] for h in mirror.hits if h.path.endswith(".deb")]
        assert len([d for d in debs if d.startswith("coreutils_")]) == 2, debs
        assert len(debs) == len(set(debs)) + 1, debs
        out = client.containers.run(ref, ["cat", "/etc/debian_version"], remove=True).decode()
        assert out.startswith("12.")
        again = imagekit("base", catalog=catalog).stdout
        assert again.strip().endswith("present")
    finally:
        with contextlib.suppress(docker.errors.ImageNotFound):
            client.images.remove(ref, force=True)
        mirror.stop()
