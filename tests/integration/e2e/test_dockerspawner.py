"""Given the published catalog, when a JupyterHub configured with imagekit's DockerSpawner
export spawns each image a user picks on its form, then the server answers through the hub's
proxy, runs code in its kernel, and is gone when stopped.

The hub's DockerSpawner drives a dockerd of the module's own, started empty (its own data
root, socket and bridge; tests/integration/runners.py): a host that has never seen the
images, which pulls each one by the digest the catalog names, as on a site's first spawn."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator
from html import unescape
from pathlib import Path
from typing import Any

import docker.errors
import pytest

from imagekit.checks.kernel import execute
from imagekit.exports.common import label
from imagekit.published.catalog import PublishedCatalog
from tests.integration.e2e.conftest import Timings, wait_for
from tests.integration.hubs import Hub, unique_user
from tests.integration.runners import Runner

# DockerSpawner drives the Docker daemon's API: Docker's consumer, not run under Podman.
pytestmark = pytest.mark.docker_engine

SUBNET = 45  # 172.30.45.0/24, the spawn host's bridge (runners 41-42, arm64 43, credentials 44)

# The hub listens for its containers on the spawn host's bridge (GUIDE.md section 6).
SITE = f"""
# --- the site's part: where the containers reach the hub, and how they are kept
c.JupyterHub.hub_connect_ip = '172.30.{SUBNET}.1'
c.DockerSpawner.remove = True
c.DockerSpawner.use_internal_ip = False
c.DockerSpawner.name_template = 'e2e-{{username}}'
c.Spawner.start_timeout = 300
c.Spawner.http_timeout = 120
"""


@pytest.fixture(scope="module")
def host() -> Iterator[Runner]:
    """The spawn host: an empty dockerd, removed with all it pulled when the module ends."""
    engine = Runner("spawn", Path(tempfile.mkdtemp(prefix="ik-spawn-")), SUBNET)
    try:
        engine.start()
        yield engine
    finally:
        engine.stop()


@pytest.fixture(scope="module")
def hub(exports: Path, host: Runner, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    config = (exports / "dockerspawner.py").read_text() + SITE
    # DockerSpawner's Docker client reads DOCKER_HOST, as on a hub whose engine is elsewhere.
    running = Hub(tmp_path_factory.mktemp("hub-docker"), config, hub_ip="0.0.0.0",
                  env=host.env)
    running.start()
    yield running
    running.stop()


def spawn(hub: Hub, published: PublishedCatalog, image: str, timings: Timings) -> str:
    user = unique_user("dk")
    browser = hub.login(user)
    form = unescape(hub.spawn_form(browser, user))
    choice = label(published.image(image))
    assert choice in form, f"{choice!r} is not offered on the spawn form:\n{form[:3000]}"
    hub.submit_form(browser, user, {"image": choice})
    timings.add("DockerSpawner", hub.wait_ready(user, timeout=300))
    return user


def container_of(client: Any, user: str) -> Any:
    found = client.containers.list(all=True, filters={"name": f"e2e-{user}"},
                                   ignore_removed=True)  # one on its way out
    return found[0] if found else None


def removed(client: Any, user: str) -> None:
    """The user's container is gone. DockerSpawner creates it with auto_remove: its own
    remove call meets dockerd's removal under way (HTTP 409) and returns, so the container
    may outlive the hub's stop by a moment."""
    wait_for(lambda: container_of(client, user) is None, 60,
             f"{user}'s container removed after the hub stopped it")


@pytest.mark.parametrize(("image", "kernel", "code", "expect"), [
    ("scipy", "python3", "import numpy as np; print(int(np.arange(10).sum()))", "45"),
    ("r", "ir", "suppressMessages(library(dplyr)); cat(nrow(filter(mtcars, cyl == 4)))", "11"),
])
def test_a_picked_image_serves_and_computes_through_the_proxy(
        hub: Hub, published: PublishedCatalog, host: Runner, timings: Timings, image: str,
        kernel: str, code: str, expect: str) -> None:
    # The spawn host has never seen the image: it was built and tested on another engine.
    with pytest.raises(docker.errors.ImageNotFound):
        host.client.images.get(published.image(image).image_id)
    user = spawn(hub, published, image, timings)
    container = container_of(host.client, user)
    assert container is not None and container.status == "running"
    # The container runs the very image the catalog names, pulled by its digest.
    assert container.image.id == published.image(image).image_id

    status = hub.get(user, "/api/status")
    assert status.status_code == 200, status.text
    assert "kernels" in status.json()
    assert execute(hub.user_url(user), hub.token, kernel, code).strip() == expect

    hub.stop_server(user)
    removed(host.client, user)  # stopped and removed


def test_the_default_image_comes_first_on_the_form(hub: Hub, published: PublishedCatalog) -> None:
    user = unique_user("dk")
    form = unescape(hub.spawn_form(hub.login(user), user))
    offered = re.findall(r"<option[^>]*>([^<]*)</option>", form)
    assert offered and offered[0] == label(published.image("scipy")), offered
    assert label(published.image("scipy-hpc")) not in offered  # batchspawner only


def test_vscode_answers_through_the_proxy_behind_jupyter_server_proxy(
        hub: Hub, published: PublishedCatalog, host: Runner, timings: Timings) -> None:
    user = spawn(hub, published, "vscode", timings)
    try:
        # jupyter-vscode-proxy starts code-server on first request, below the user's prefix.
        health = hub.get(user, "/vscode/healthz")
        assert health.status_code == 200, health.text[:500]
        assert "status" in health.json()
        page = hub.get(user, "/vscode/")
        assert page.status_code == 200
        assert "code-server" in page.text.lower() or "vscode" in page.text.lower()
    finally:
        hub.stop_server(user)
    removed(host.client, user)
