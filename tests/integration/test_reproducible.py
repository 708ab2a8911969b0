"""Given a stack and its lock, when it is built twice, then both images hold the same Python
and Debian packages: the versions the lock names, installed only if their hashes match."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration import suite
from tests.integration.conftest import imagekit

pytestmark = [pytest.mark.integration, pytest.mark.docker_engine]

REPRO = """\
description: A small stack built twice from one lock.
extends: base
apt: [jq]
pip: [tabulate, toolz]
args:
  REPRO_BUILD: "{run}"
checks:
  imports: [tabulate, toolz]
"""


@pytest.fixture
def repro(tmp_path: Path, client: Any) -> Iterator[Path]:
    catalog = suite.copy_project(tmp_path, "repro")
    (tmp_path / "stacks/repro.yaml").write_text(REPRO.format(run="one"))
    catalog.write_text(catalog.read_text()
                       .replace("  - stack: pyspark\n", "  - stack: pyspark\n  - stack: repro\n"))
    yield catalog
    for name in ("repro", "base"):
        for image in client.images.list(suite.repository(name, "repro")):
            client.images.remove(image.id, force=True)


def _inside(client: Any, command: str) -> str:
    out: bytes = client.containers.run(suite.ref("repro", "repro"), ["-c", command],
                                       entrypoint=["/bin/bash"], remove=True)
    return out.decode()


def _pins(lock: str) -> dict[str, str]:
    found = re.findall(r"^([A-Za-z0-9._-]+)==(\S+) \\$", lock, re.M)
    return {re.sub(r"[-_.]+", "-", n).lower(): v for n, v in found}


def test_two_builds_from_one_lock_hold_the_same_packages(
        build: Callable[..., Any], client: Any, repro: Path) -> None:
    build("base")
    catalog = repro
    stacks = catalog.parent / "stacks"
    locked = imagekit("lock", "repro", catalog=catalog)
    assert "locked repro: " in locked.stdout
    imagekit("lock", "--check", catalog=catalog)
    lock = (stacks / "repro.lock").read_text()

    freeze = "/opt/venv/bin/python -m pip freeze --all 2>/dev/null"
    dpkg = "dpkg-query -W -f='${Package} ${Version} ${Architecture}\\n'"
    seen = []
    for run in ("one", "two"):
        # A different build argument: every RUN of the stack runs again (apt and pip), but
        # nothing the lock depends on changes, so the lock stays current.
        (stacks / "repro.yaml").write_text(REPRO.format(run=run))
        imagekit("build", "repro", "--format", "docker", "--plain", catalog=catalog)
        image = client.images.get(suite.ref("repro", "repro"))
        seen.append((image.id, _inside(client, freeze), _inside(client, dpkg)))
    (first_id, first_pip, first_deb), (second_id, second_pip, second_deb) = seen
    assert first_id != second_id, "the second build ran its steps again"
    assert first_pip == second_pip
    assert first_deb == second_deb
    assert "jq " in first_deb
    # The image keeps the lock it was installed from.
    assert _inside(client, "cat /opt/imagekit/build/repro-pip/requirements.lock") == lock

    # What pip sees is the lock: every package it names, at its version, and nothing else
    # but the venv's own pip and setuptools; uv installed it but is not in the image.
    installed = _pins(first_pip.replace("\n", " \\\n"))
    assert {k: v for k, v in installed.items() if k not in ("pip", "setuptools")} == \
        {k: v for k, v in _pins(lock).items() if k != "uv"}
    assert _inside(client, "command -v uv || echo none").strip() == "none"


def test_a_package_whose_hash_is_not_in_the_lock_is_refused(
        build: Callable[..., Any], client: Any, repro: Path) -> None:
    build("base")
    catalog = repro
    imagekit("lock", "repro", catalog=catalog)
    path = catalog.parent / "stacks/repro.lock"
    # Every hash of one package replaced: the lock still reads as current (its inputs did
    # not change), so only the installer's hash check can stop it.
    lines = path.read_text().split("\n")
    start = next(i for i, line in enumerate(lines) if line.startswith("tabulate=="))
    end = start + 1
    while lines[end].startswith("    --hash="):
        lines[end] = re.sub(r"sha256:[0-9a-f]{64}", "sha256:" + "0" * 64, lines[end])
        end += 1
    text = "\n".join(lines)
    path.write_text(text)
    imagekit("lock", "--check", catalog=catalog)
    result = imagekit("build", "repro", "--format", "docker", "--plain", catalog=catalog,
                      check=False)
    assert result.returncode == 1
    assert "hash" in (result.stdout + result.stderr).lower()
    assert "Traceback" not in result.stdout + result.stderr
    assert client.images.list(suite.repository("repro", "repro")) == []


def test_relocking_keeps_the_pins_the_stack_still_allows(repro: Path) -> None:
    catalog = repro
    stacks = catalog.parent / "stacks"
    imagekit("lock", "repro", catalog=catalog)
    newest = _pins((stacks / "repro.lock").read_text())["tabulate"]
    # An older tabulate pinned (as a lock written months ago would hold it), then one
    # package added to the stack: relocking adds it and moves nothing else...
    path = stacks / "repro.lock"
    path.write_text(path.read_text().replace(f"tabulate=={newest} ", "tabulate==0.8.10 "))
    (stacks / "repro.yaml").write_text(REPRO.format(run="one").replace(
        "pip: [tabulate, toolz]", "pip: [tabulate, toolz, six]"))
    imagekit("lock", "repro", catalog=catalog)
    pins = _pins(path.read_text())
    assert pins["tabulate"] == "0.8.10" and "six" in pins
    # ... and --upgrade takes the newest versions the stack allows.
    imagekit("lock", "repro", "--upgrade", catalog=catalog)
    assert _pins(path.read_text())["tabulate"] == newest


def _layers(client: Any, image: str) -> list[str]:
    layers: list[str] = client.images.get(suite.ref(image, "repro")).attrs["RootFS"]["Layers"]
    return layers


def test_a_package_added_to_a_stack_installs_in_a_layer_above_the_settled_install(
        build: Callable[..., Any], client: Any, repro: Path) -> None:
    build("base")
    catalog = repro
    stacks = catalog.parent / "stacks"
    imagekit("lock", "repro", catalog=catalog)
    imagekit("build", "repro", "--format", "docker", "--plain", catalog=catalog)
    before, base = _layers(client, "repro"), _layers(client, "base")
    # The layers up to the settled install: the base's and each COPY, RUN or ADD of the
    # recipe up to the one that installs pip/settled.lock.
    imagekit("render", "repro", catalog=catalog)
    recipe = (catalog.parent / "recipes/repro/Dockerfile").read_text()
    steps = [m.group(0) for m in re.finditer(r"^(?:COPY|ADD|RUN) (?:.*\\\n)*.*$", recipe, re.M)]
    settled = len(base) + 1 + next(i for i, step in enumerate(steps)
                                   if step.startswith("RUN ") and "/settled.lock \\" in step)
    # One package added, as a user does it: edit the stack, lock it, build it.
    (stacks / "repro.yaml").write_text(REPRO.format(run="one").replace(
        "pip: [tabulate, toolz]", "pip: [tabulate, toolz, termcolor]"))
    said = imagekit("lock", "repro", catalog=catalog).stdout
    assert "(1 added since it was settled)" in said
    imagekit("build", "repro", "--format", "docker", "--plain", catalog=catalog)
    after = _layers(client, "repro")
    assert after[:settled] == before[:settled], "the settled install was not kept"
    assert after[settled] != before[settled]
    imported = "/opt/venv/bin/python -c 'import termcolor, tabulate; print(termcolor.__name__)'"
    assert _inside(client, imported).strip() == "termcolor"
    lock = (stacks / "repro.lock").read_text()
    assert _inside(client, "cat /opt/imagekit/build/repro-pip/requirements.lock") == lock
    # Taken out again: the lock, and so the image's layers, are what they were.
    (stacks / "repro.yaml").write_text(REPRO.format(run="one"))
    imagekit("lock", "repro", catalog=catalog)
    imagekit("build", "repro", "--format", "docker", "--plain", catalog=catalog)
    assert _layers(client, "repro") == before
