"""Given an air-gapped site (no package index, a wheelhouse), when I build, then everything
comes from the wheelhouse, dependencies of the named packages included."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pytest

from tests.integration import background, suite
from tests.integration.conftest import imagekit, main_base
from tests.integration.mirror import Mirror

pytestmark = pytest.mark.integration

OFFLINE = """\
description: A stack built with no package index at all.
extends: base
pip: [python-dateutil]
checks:
  imports: [dateutil, six]
"""


WHEELHOUSE = Path("/var/cache/imagekit/test-wheelhouse")
BASE_PACKAGES = ["jupyterlab>=4.2,<5", "jupyterhub>=5,<7", "batchspawner>=1.3", "ipykernel",
                 "jupyter-server-proxy>=4"]


@dataclass
class Offline:
    locked: str  # what `imagekit lock` said
    lock: str  # the offline stack's lock
    dockerfile: str  # its rendered recipe
    rendered: str  # what `imagekit render` said
    built: str  # what `imagekit build` said
    inside: str  # what the image's Python imports
    asked: list[Any]  # what the index saw asked of it


def prepare(folder: Path) -> Offline:
    """The air-gapped site's build, made in place (tests/integration/background.py; its
    build is the suite engine's) under a namespace of its own; the test below reads what it saw."""
    # The site's wheelhouse, made the way an air-gapped site makes one: every wheel of the
    # tree's packages, here base's and offline's (kept between runs: ~90 MB).
    wheels = WHEELHOUSE
    # For the image's Python (Debian's 3.11.2), not the one running the tests.
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:",
                    "--python-version", "3.11.2", "--dest", str(wheels), *BASE_PACKAGES, "uv",
                    "python-dateutil==2.9.0.post0"], check=True)
    main_base()
    client = docker.from_env(timeout=900)
    index = Mirror("nobody", "unused").start()  # an index the build must never ask
    try:
        catalog = suite.copy_project(folder, "offline")
        (folder / "stacks/offline.yaml").write_text(OFFLINE)
        catalog.write_text(catalog.read_text()
                           .replace("  - stack: pyspark\n",
                                    "  - stack: pyspark\n  - stack: offline\n"))
        mirrors = folder / "profiles/mirrors.yaml"
        mirrors.write_text(mirrors.read_text().replace("find_links: /opt/wheels", (
            f"find_links: {wheels}\n  pip_no_index: true\n"
            f"  pip_index_url: http://172.17.0.1:{index.port}/pypi/simple")))
        # The locks too come from the wheelhouse alone: uv resolves with --no-index.
        locked = imagekit("lock", "base", "offline", catalog=catalog)
        rendered = imagekit("render", "offline", catalog=catalog)
        # base too: a site setting reaches the root image, so the whole tree is offline.
        built = imagekit("build", "offline", "--format", "docker", "--plain", catalog=catalog)
        inside = client.containers.run(
            suite.ref("offline", "offline"),
            ["-c", "import dateutil, six; print(dateutil.__version__, six.__version__)"],
            entrypoint=["/opt/venv/bin/python"], remove=True).decode()
        return Offline(locked.stdout, (folder / "stacks/offline.lock").read_text(),
                       (folder / "recipes/offline/Dockerfile").read_text(), rendered.stdout,
                       built.stdout, inside, list(index.hits))
    finally:
        index.stop()
        for name in ("offline", "base"):
            for image in client.images.list(suite.repository(name, "offline")):
                client.images.remove(image.id, force=True)
        client.close()


def test_a_build_with_no_index_installs_from_the_wheelhouse() -> None:
    try:
        seen: Offline = background.result(__name__)
    finally:
        background.finish(__name__)
    assert "locked offline: " in seen.locked
    assert "python-dateutil==2.9.0.post0 \\\n" in seen.lock
    assert "--find-links /tmp/imagekit-wheelhouse --no-index" in seen.dockerfile, seen.rendered
    assert "--no-index" in seen.built
    assert seen.inside.startswith("2.9.0.post0 ")
    assert seen.asked == []
