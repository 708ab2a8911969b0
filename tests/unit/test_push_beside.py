"""The engine's push runs beside the SIF's upload (Registry.pushing_image): its result or its
error comes back to the caller, and leaving early stops it and removes the engine's tag.

Registry.pushing_image is tested with the unit fake's engine; Docker's push with the real
docker SDK against an HTTP server on a Unix socket that answers as dockerd does, and then
falls silent; Podman's push runs on a terminal (_on_terminal), tested on a real process. The
real engines' pushes, stopped by Ctrl-C in the middle of a publish, are
tests/integration/test_publish.py's."""

from __future__ import annotations

import json
import socketserver
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import ClassVar

import docker
import pytest

from imagekit.engine import temporary
from imagekit.engine.client import Engine, Stop
from imagekit.engine.podman import _on_terminal
from imagekit.errors import BuildFailed
from imagekit.publish.registry import Registry
from imagekit.resolve import load_catalog
from tests.unit.fakes import FakeEngine

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "sha256:" + "c" * 64
REPOSITORY = "127.0.0.1:5055/imagekit/scipy"
REF = f"{REPOSITORY}:id-cccccccccccc"


class PushingEngine(FakeEngine):
    """A fake whose push waits to be told how to end: when `stop` is set (it says so) or
    `finish` (it fails or succeeds, as `error` says)."""

    def __init__(self, error: str = "") -> None:
        super().__init__()
        self.started = threading.Event()
        self.finish = threading.Event()
        self.stopped = threading.Event()
        self.error = error
        self.pushed_ref = ""

    def layer_diff_ids(self, image: str) -> list[str]:
        return []

    def push(self, ref: str, auth: dict[str, str] | None, stop: Stop | None = None
             ) -> set[str]:
        assert stop is not None
        self.pushed_ref = ref
        self.started.set()
        while not self.finish.is_set():
            if stop.is_set():
                self.stopped.set()
                raise BuildFailed(f"pushing {ref}: stopped")
            time.sleep(0.01)
        if self.error:
            raise BuildFailed(self.error)
        return set()


@pytest.fixture
def registry() -> Registry:
    return Registry(load_catalog(ROOT / "catalog.yaml"))


def test_leaving_early_stops_the_push_and_removes_the_tag(registry: Registry) -> None:
    engine = PushingEngine()
    engine.add(IMAGE)
    with pytest.raises(RuntimeError, match="the SIF's upload failed"), \
            registry.pushing_image(engine, IMAGE, REPOSITORY, "id-cccccccccccc", []):
        assert engine.started.wait(5)
        assert engine.refs[REF] == IMAGE  # tagged by ID for the push
        raise RuntimeError("the SIF's upload failed")
    assert engine.stopped.is_set()
    assert REF not in engine.refs and REF not in temporary._tags
    assert engine.pushed_ref == REF


def test_a_tag_that_named_the_image_before_is_left_as_it_was(registry: Registry) -> None:
    engine = PushingEngine()
    engine.add(IMAGE, REF)  # another imagekit's push of the same image, or a user's pull
    with registry.pushing_image(engine, IMAGE, REPOSITORY, "id-cccccccccccc", []) as pushed:
        engine.finish.set()
        assert engine.started.wait(5)
    assert engine.pushed_ref == REF and engine.refs[REF] == IMAGE
    assert engine.tagged == [] and REF not in temporary._tags
    assert callable(pushed)


class UntagRefused(PushingEngine):
    def untag(self, ref: str) -> None:
        raise RuntimeError("the engine went away")


def test_a_tag_whose_removal_failed_is_left_to_the_last_clean_up(registry: Registry) -> None:
    engine = UntagRefused()
    engine.add(IMAGE)
    try:
        with pytest.raises(RuntimeError, match="went away"), \
                registry.pushing_image(engine, IMAGE, REPOSITORY, "id-cccccccccccc", []):
            engine.started.wait(5)
        assert REF in temporary._tags  # what clean_up removes when the process is interrupted
    finally:
        temporary.untagged(REF)


def test_the_engines_failure_is_the_callers(registry: Registry) -> None:
    engine = PushingEngine(error="pushing x failed: denied: requested access is refused")
    engine.add(IMAGE)
    with pytest.raises(BuildFailed, match="denied"), \
            registry.pushing_image(engine, IMAGE, REPOSITORY, "id-cccccccccccc",
                                   []) as pushed:
        engine.finish.set()
        pushed()
    assert not engine.stopped.is_set()
    assert REF not in engine.refs


def test_a_stop_runs_what_was_hooked_on_it_while_hooked() -> None:
    stop, ran = Stop(), []
    with stop.hook(lambda: ran.append("inside")):
        pass
    with stop.hook(lambda: ran.append("set while hooked")):
        stop.set()
        stop.set()  # once only
    with stop.hook(lambda: ran.append("hooked after the set")):
        pass
    assert ran == ["set while hooked", "hooked after the set"]


def test_a_command_on_a_terminal_ends_when_stopped() -> None:
    stop = Stop()
    with_it = threading.Thread(target=lambda: _wait_then(stop))
    with_it.start()
    # Ended by the stop: without it, the command would outlast the timeout ("timed out").
    with pytest.raises(BuildFailed, match="stopped"):
        _on_terminal(["sleep", "60"], timeout=20, stop=stop)
    with_it.join()


def test_a_command_on_a_terminal_that_ignores_the_stop_is_killed() -> None:
    stop = Stop()
    threading.Thread(target=lambda: _wait_then(stop), daemon=True).start()
    started = time.monotonic()
    with pytest.raises(BuildFailed, match="stopped"):
        _on_terminal(["sh", "-c", "trap '' TERM; sleep 60"], timeout=50, stop=stop)
    assert time.monotonic() - started < 40  # 10 s after the stop's SIGTERM, a SIGKILL


def _wait_then(stop: Stop) -> None:
    time.sleep(0.3)
    stop.set()


def test_a_command_on_a_terminal_runs_to_its_end_unless_stopped() -> None:
    status, output = _on_terminal(["sh", "-c", "echo pushed; exit 3"], timeout=30, stop=Stop())
    assert (status, output.strip()) == (3, "pushed")


# -- Docker's push through the real SDK, against a dockerd-like answer on a Unix socket --------

class Dockerd(BaseHTTPRequestHandler):
    """Answers the ping, and a push with dockerd's progress messages (chunked JSON lines);
    `silent`: one message, then nothing until the client goes away."""

    protocol_version = "HTTP/1.1"
    silent = True
    client_left = threading.Event()
    paths: ClassVar[list[str]] = []

    def address_string(self) -> str:
        return "unix"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"OK")

    def do_POST(self) -> None:
        self.paths.append(self.path)
        self.rfile.read(int(self.headers.get("Content-Length") or 0))  # the SDK's "{}"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self._chunk({"status": "Preparing", "id": "0123456789ab"})
        if not self.silent:
            self._chunk({"status": "Layer already exists", "id": "aaaaaaaaaaaa"})
            self._chunk({"status": "Pushed", "id": "0123456789ab"})
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
            return
        # dockerd compressing a large layer before its next message: silence, until the
        # client shuts the connection (recv gives b"").
        if self.rfile.read(1) == b"":
            Dockerd.client_left.set()
        self.close_connection = True

    def _chunk(self, event: dict[str, str]) -> None:
        data = json.dumps(event).encode() + b"\r\n"
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


@pytest.fixture
def dockerd(tmp_path: Path) -> Iterator[Engine]:
    socket_path = tmp_path / "docker.sock"
    server = Server(str(socket_path), Dockerd)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    Dockerd.client_left.clear()
    Dockerd.paths.clear()
    client = docker.DockerClient(base_url=f"unix://{socket_path}", version="1.41", timeout=120)
    try:
        yield Engine(client)
    finally:
        client.close()
        server.shutdown()
        server.server_close()


def test_dockers_push_says_which_layers_the_registry_had(dockerd: Engine,
                                                         monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    monkeypatch.setattr(Dockerd, "silent", False)
    assert dockerd.push(REF, None, Stop()) == {"aaaaaaaaaaaa"}
    assert Dockerd.paths == [f"/v1.41/images/{REPOSITORY}/push?tag=id-cccccccccccc"]


def test_dockers_push_stopped_while_the_engine_is_silent_ends_and_lets_go(dockerd: Engine
                                                                          ) -> None:
    stop = Stop()
    threading.Thread(target=lambda: _wait_then(stop), daemon=True).start()
    started = time.monotonic()
    with pytest.raises(BuildFailed, match="stopped"):
        dockerd.push(REF, None, stop)
    # Ended by the stop, not by the client's read timeout (120 s) or the next message (none).
    assert time.monotonic() - started < 30
    assert Dockerd.client_left.wait(10)  # the connection shut: dockerd cancels the push
