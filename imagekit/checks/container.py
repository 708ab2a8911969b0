"""Containers started for checks: published on loopback only, always removed afterwards."""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import docker.errors
import requests

from imagekit.checks import CheckFailed
from imagekit.engine import temporary
from imagekit.engine.client import Engine

LABEL = "io.imagekit.check"


@dataclass
class Running:
    engine: Engine
    container: Any
    port: int
    token: str

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def logs(self) -> str:
        data: bytes = self.container.logs(stdout=True, stderr=True)
        return data.decode(errors="replace")

    def exec(self, command: str, user: str | None = None) -> tuple[int, str]:
        return self.engine.exec(self.container, command, user or "")

    def wait_http(self, path: str, timeout: float = 90, accept: tuple[int, ...] = (200,),
                  **kwargs: Any) -> tuple[requests.Response, float]:
        """Poll until `path` answers with an accepted status; return it and the latency."""
        started = time.monotonic()
        last = "no answer"
        while time.monotonic() - started < timeout:
            self.container.reload()
            if self.container.status in ("exited", "dead"):
                raise CheckFailed(f"container exited ({self.container.attrs['State']['ExitCode']})"
                                  f"; last log lines:\n{_tail(self.logs())}")
            try:
                response = requests.get(self.base + path, timeout=5, **kwargs)
                if response.status_code in accept:
                    return response, time.monotonic() - started
                last = f"HTTP {response.status_code}"
            except requests.RequestException as exc:
                last = type(exc).__name__
            time.sleep(0.1)
        raise CheckFailed(f"GET {path}: {last} after {timeout:.0f} s; log:\n{_tail(self.logs())}")


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


@contextlib.contextmanager
def started(engine: Engine, ref: str, *, port: int = 8888, env: dict[str, str] | None = None,
            token: str | None = None, **options: Any) -> Iterator[Running]:
    """Run the image detached with its port on 127.0.0.1; remove it whatever happens."""
    token = token if token is not None else secrets.token_hex(16)
    environment = dict(env or {})
    if token:
        environment.setdefault("JUPYTER_TOKEN", token)
    container = engine.client.containers.run(
        ref, detach=True, environment=environment, ports={f"{port}/tcp": ("127.0.0.1", None)},
        labels=temporary.labels(**{LABEL: "1"}), **options,
    )
    try:
        container.reload()
        host_port = int(container.ports[f"{port}/tcp"][0]["HostPort"])
        yield Running(engine, container, host_port, token)
    finally:
        with contextlib.suppress(docker.errors.DockerException):
            container.remove(force=True, v=True)

