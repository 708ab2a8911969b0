"""Which engine a run talks to: `--engine` (or IMAGEKIT_ENGINE), else the catalog's
`engine:`, else auto, which takes Docker when it answers and Podman when it is installed.
A DOCKER_HOST the caller set names Docker: auto then never falls back to Podman, so that a
daemon that is down says so instead of a build landing in another engine's store."""

from __future__ import annotations

import os

import docker
import docker.errors

from imagekit.engine.client import Engine
from imagekit.engine.podman import PodmanEngine, podman_cli
from imagekit.errors import ImagekitError, Problem
from imagekit.model import Catalog

ENGINES = ("auto", "docker", "podman")


def connect(catalog: Catalog, choice: str | None = None) -> Engine:
    wanted = choice or catalog.engine
    if wanted not in ENGINES:
        raise ImagekitError(Problem(None, "--engine", f"{wanted!r} is not one of "
                                    f"{', '.join(ENGINES)}"))
    insecure = frozenset({catalog.registry} if catalog.insecure_registry else ())
    if wanted == "docker" or (wanted == "auto" and os.environ.get("DOCKER_HOST")):
        return Engine()
    if wanted == "podman":
        return PodmanEngine(insecure)
    try:
        client = docker.from_env(timeout=900)
        client.ping()
        return Engine(client)
    except docker.errors.DockerException as exc:
        if podman_cli() is not None:
            return PodmanEngine(insecure)
        raise ImagekitError(f"no container engine: Docker does not answer ({exc}) and podman "
                            "is not installed; start dockerd or install podman (`imagekit "
                            "doctor` lists what is missing)") from None
