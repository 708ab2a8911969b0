"""Containers and volumes imagekit makes for a moment: checks, version tags, SIF exports.

Each carries `io.imagekit.temporary=<this process's session>`, so however the process ends
(a step failing, Ctrl-C, SIGTERM from a CI runner) the ones it made can be found and removed,
and a second imagekit running beside it keeps its own.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from typing import Any

import docker
import docker.errors

LABEL = "io.imagekit.temporary"
SESSION = f"{os.getpid()}-{secrets.token_hex(4)}"


_made = False
_client: Any = None


def use(client: Any) -> None:
    """The engine this process talks to (Docker, or Podman's API): what clean_up reaches."""
    global _client
    _client = client


def labels(**extra: str) -> dict[str, str]:
    global _made
    _made = True
    return {LABEL: SESSION, **extra}


def clean_up() -> int:
    """At exit after an interruption: remove what this process made, if it made anything."""
    if not _made:
        return 0
    try:
        client = _client or docker.from_env(timeout=60)
        containers, volumes = remove_session(client)
    except docker.errors.DockerException:
        return 0
    return containers + volumes


def remove_session(client: Any, session: str = SESSION) -> tuple[int, int]:
    """Remove this session's containers, then its volumes; (containers, volumes) removed."""
    selector = {"label": f"{LABEL}={session}"}
    containers = client.containers.list(all=True, filters=selector)
    for container in containers:
        with contextlib.suppress(docker.errors.DockerException):
            container.remove(force=True, v=True)
    volumes = client.volumes.list(filters=selector)
    for volume in volumes:
        with contextlib.suppress(docker.errors.DockerException):
            volume.remove(force=True)
    return len(containers), len(volumes)
