"""Containers and volumes imagekit makes for a moment: checks, version tags, SIF exports.

Each carries `io.imagekit.temporary=<this process's session>`, so however the process ends
(a step failing, Ctrl-C, SIGTERM from a CI runner) the ones it made can be found and removed,
and a second imagekit running beside it keeps its own. Tags made for a moment (a push's
`id-` tag) are kept in a list of the process's own, for the same last clean-up.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import docker
import docker.errors

LABEL = "io.imagekit.temporary"
REMOVAL_WAIT = 30.0  # seconds for the engine to end removals under way
SESSION = f"{os.getpid()}-{secrets.token_hex(4)}"


_made = False
_engine_url: str | None = None
_tags: set[str] = set()  # tags made for a moment (a push's id- tag), not yet removed


def use(url: str | None) -> None:
    """The engine this process talks to: its API's address (Podman's socket), or None for
    Docker's from the environment. clean_up reaches the same one."""
    global _engine_url
    _engine_url = url


def labels(**extra: str) -> dict[str, str]:
    global _made
    _made = True
    return {LABEL: SESSION, **extra}


def tagged(ref: str) -> None:
    """A tag this process makes for a moment: clean_up removes it if its maker could not."""
    _tags.add(ref)


def untagged(ref: str) -> None:
    _tags.discard(ref)


def clean_up() -> int:
    """At exit after an interruption: remove what this process made, if it made anything
    (the containers and volumes counted)."""
    if not _made and not _tags:
        return 0
    try:
        # A client of its own with a short timeout: a hung engine must not stall the exit.
        client = (docker.DockerClient(base_url=_engine_url, timeout=60) if _engine_url
                  else docker.from_env(timeout=60))
        for ref in sorted(_tags):
            with contextlib.suppress(docker.errors.DockerException):
                client.api.remove_image(ref, noprune=True)  # the tag; the image stays
        _tags.clear()
        containers, volumes = remove_session(client) if _made else (0, 0)
    except docker.errors.DockerException:
        return 0
    return containers + volumes


def remove_session(client: Any, session: str = SESSION) -> tuple[int, int]:
    """Remove this session's containers, then its volumes; (containers, volumes) removed."""
    selector = {"label": f"{LABEL}={session}"}
    # One the engine is removing may be gone between its listing and its inspection.
    containers = client.containers.list(all=True, filters=selector, ignore_removed=True)
    for container in containers:
        with contextlib.suppress(docker.errors.DockerException):
            container.remove(force=True, v=True)
    # A container whose removal the interrupted step had already asked for is refused here
    # ("removal already in progress") and holds its volumes until the engine is done with
    # it: its volumes can go only after that.
    deadline = time.monotonic() + REMOVAL_WAIT
    while (client.containers.list(all=True, filters=selector, ignore_removed=True)
           and time.monotonic() < deadline):
        time.sleep(0.2)
    volumes = client.volumes.list(filters=selector)
    for volume in volumes:
        with contextlib.suppress(docker.errors.DockerException):
            volume.remove(force=True)
    return len(containers), len(volumes)


class Interrupted(BaseException):
    """Ctrl-C or SIGTERM: unwinds every step (its `finally` clean-ups run) up to
    `removed_when_interrupted`. Not KeyboardInterrupt, which typer turns into an exit of its
    own first."""


def _interrupted(signum: int, frame: object) -> None:
    raise Interrupted(signum)


@contextlib.contextmanager
def removed_when_interrupted(say: Callable[[str], None]) -> Iterator[None]:
    """Run a command to its end or, interrupted (Ctrl-C, a CI runner's SIGTERM), remove what
    this process made, say so, and exit 130."""
    signal.signal(signal.SIGINT, _interrupted)
    signal.signal(signal.SIGTERM, _interrupted)  # a CI runner stopping the job
    try:
        yield
    except (Interrupted, KeyboardInterrupt):
        removed = clean_up()
        say("interrupted" + (f"; removed {removed} temporary containers and volumes"
                             if removed else ""))
        sys.exit(130)
