"""A container an engine started for imagekit, as callers outside imagekit.engine see it.

Engine.start returns a Container; its operations are the ones checks need (run a command in
it, read its log, its state and health, the host port it publishes) and removing it. What it
returns is plain data, never the SDK's objects, and what fails raises EngineError.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from imagekit.engine.errors import engine_errors


class Runs(Protocol):
    """What a container asks of the engine that started it (Podman answers differently)."""

    def exec(self, container: Container, command: str, user: str = "") -> tuple[int, str]: ...
    def health(self, container: Container) -> Health: ...


@dataclass(frozen=True)
class VolumeMount:
    """A named volume mounted read-write at `target`. With `nocopy` the engine does not fill
    an empty volume from the image's files at that path first (as a fresh Kubernetes PVC)."""

    volume: str
    target: str
    nocopy: bool = False


@dataclass(frozen=True)
class Healthcheck:
    """Timing for the image's own HEALTHCHECK command, in seconds."""

    interval: float
    timeout: float
    retries: int
    start_period: float


@dataclass(frozen=True)
class State:
    status: str  # created, running, exited, dead, ...
    exit_code: int


@dataclass(frozen=True)
class Health:
    """The container's health as the engine reports it: its status (None when the image has
    no HEALTHCHECK or none ran yet) and the output of the last check run."""

    status: str | None
    output: str = ""


class Container:
    """A container of one engine. `sdk` is the docker SDK's object: for imagekit.engine only."""

    def __init__(self, engine: Runs, sdk: Any) -> None:
        self.engine = engine
        self.sdk = sdk

    @property
    def id(self) -> str:
        return str(self.sdk.id)

    def exec(self, command: str, user: str = "") -> tuple[int, str]:
        """Exit status and output (stdout and stderr) of `bash -c command` in the running
        container, as `user` (the image's own user when empty)."""
        return self.engine.exec(self, command, user)

    def logs(self) -> str:
        """Its log so far, stdout and stderr."""
        with engine_errors():
            data: bytes = self.sdk.logs(stdout=True, stderr=True)
        return data.decode(errors="replace")

    def state(self) -> State:
        """Its state now (asked of the engine afresh)."""
        with engine_errors():
            self.sdk.reload()
            state = self.sdk.attrs.get("State") or {}
            return State(str(self.sdk.status), int(state.get("ExitCode", -1)))

    def health(self) -> Health:
        return self.engine.health(self)

    def host_port(self, port: int) -> int:
        """The port of the host's loopback at which its TCP `port` is published."""
        with engine_errors():
            self.sdk.reload()
            return int(self.sdk.ports[f"{port}/tcp"][0]["HostPort"])

    def remove(self, volumes: bool = False) -> None:
        """Remove it, running or not; with `volumes`, its anonymous volumes too."""
        with engine_errors():
            if volumes:
                self.sdk.remove(force=True, v=True)
            else:
                self.sdk.remove(force=True)
