"""Containers started for checks: published on loopback only, always removed afterwards."""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import requests

from imagekit.checks import CheckFailed
from imagekit.engine.client import Engine
from imagekit.engine.container import Container, Healthcheck, VolumeMount
from imagekit.engine.errors import EngineError

LABEL = "io.imagekit.check"


@dataclass
class Running:
    engine: Engine
    container: Container
    port: int
    token: str

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def logs(self) -> str:
        return self.container.logs()

    def exec(self, command: str, user: str | None = None) -> tuple[int, str]:
        return self.container.exec(command, user or "")

    def wait_http(self, path: str, timeout: float = 90, accept: tuple[int, ...] = (200,),
                  **kwargs: Any) -> tuple[requests.Response, float]:
        """Poll until `path` answers with an accepted status; return it and the latency."""
        started = time.monotonic()
        last = "no answer"
        while time.monotonic() - started < timeout:
            state = self.container.state()
            if state.status in ("exited", "dead"):
                raise CheckFailed(f"container exited ({state.exit_code})"
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
            token: str | None = None, command: list[str] | None = None,
            user: str | None = None, volumes: tuple[VolumeMount, ...] = (),
            read_only: bool = False, tmpfs: dict[str, str] | None = None,
            healthcheck: Healthcheck | None = None) -> Iterator[Running]:
    """Run the image detached with its port on 127.0.0.1; remove it whatever happens."""
    token = token if token is not None else secrets.token_hex(16)
    environment = dict(env or {})
    if token:
        environment.setdefault("JUPYTER_TOKEN", token)
    container = engine.start(
        ref, command, environment=environment, publish=port, labels={LABEL: "1"}, user=user,
        volumes=volumes, read_only=read_only, tmpfs=tmpfs, healthcheck=healthcheck,
    )
    try:
        yield Running(engine, container, container.host_port(port), token)
    finally:
        with contextlib.suppress(EngineError):
            container.remove(volumes=True)

