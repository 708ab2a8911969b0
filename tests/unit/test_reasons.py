"""What a failed connection comes down to, said in one line: where, and why, in a person's
words. The errors here are real ones (a port nobody listens on, a name that cannot resolve),
raised by the same libraries imagekit uses."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from imagekit.errors import one_line, reason

Cli = Callable[..., tuple[int, str]]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port  # closed again: connecting is refused


def _raised(url: str) -> requests.RequestException:
    session = requests.Session()
    session.trust_env = False  # straight to the address, not through the machine's proxy
    with pytest.raises(requests.RequestException) as caught:
        session.get(url, timeout=10)
    return caught.value


def test_a_refused_connection_is_where_and_why() -> None:
    port = _closed_port()
    exc = _raised(f"http://127.0.0.1:{port}/v2/")
    assert "Caused by" in str(exc)  # what requests says: reprs, nested
    assert reason(exc) == "Connection refused"
    assert one_line(exc) == f"connection to 127.0.0.1:{port} failed: Connection refused"


def test_a_name_that_does_not_resolve_says_so() -> None:
    exc = _raised("http://registry.invalid/v2/")
    said = reason(exc)
    assert said and "object at" not in said and "(" not in said and "'" not in said
    assert one_line(exc).startswith("connection to registry.invalid failed: ")


def test_a_registry_that_does_not_answer_is_one_clear_line(cli: Cli, project: Path) -> None:
    port = _closed_port()
    catalog = project / "catalog.yaml"
    catalog.write_text(catalog.read_text().replace("registry: 127.0.0.1:5055",
                                                   f"registry: 127.0.0.1:{port}"))
    code, output = cli("verify", "scipy", "-c", str(catalog))
    lines = output.strip().splitlines()
    assert code == 1 and len(lines) == 1, output
    assert lines[0].endswith(f"127.0.0.1:{port} did not answer: Connection refused"), output
