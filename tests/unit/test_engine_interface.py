"""The engine interface as callers use it (checks, SIF exports, publishing), against a stub of
the docker SDK's client: what each call asks of the engine's API, and that the SDK's errors
reach callers as EngineError. The real engines are exercised in tests/integration."""

from __future__ import annotations

import ast
import subprocess
import types
from pathlib import Path
from typing import Any

import docker.errors
import docker.types
import pytest

from imagekit.checks.container import LABEL, started
from imagekit.engine import temporary
from imagekit.engine.client import Engine, demultiplex, sections, sections_script
from imagekit.engine.container import Health, Healthcheck, VolumeMount
from imagekit.engine.errors import ENGINE_ERRORS, EngineError
from imagekit.errors import BuildFailed

Call = tuple[Any, ...]


class StubContainer:
    def __init__(self, calls: list[Call], number: int) -> None:
        self.calls = calls
        self.id = f"c{number}"
        self.status = "running"
        self.attrs: dict[str, Any] = {"State": {"Status": "running", "ExitCode": 0}}
        self.ports = {"8888/tcp": [{"HostIp": "127.0.0.1", "HostPort": "32768"}]}

    def reload(self) -> None:
        self.calls.append(("reload", self.id))

    def remove(self, **options: Any) -> None:
        self.calls.append(("remove", self.id, options))

    def logs(self, **options: Any) -> bytes:
        self.calls.append(("logs", self.id, options))
        return b"started\n"

    def export(self, **options: Any) -> Any:
        self.calls.append(("export", self.id, options))
        return iter([b"tar", b"stream"])


class StubClient:
    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.made = 0
        self.containers = types.SimpleNamespace(run=self._run, create=self._create)
        self.volumes = types.SimpleNamespace(create=self._create_volume)
        self.api = types.SimpleNamespace(remove_volume=self._remove_volume,
                                         inspect_image=self._inspect_image,
                                         exec_create=self._exec_create, post=self._post,
                                         exec_inspect=self._exec_inspect,
                                         base_url="http+docker://localhost",
                                         api_version="1.41", timeout=900)

    def ping(self) -> bool:
        return True

    def version(self) -> dict[str, str]:
        return {"Version": "20.10.24"}

    def _container(self) -> StubContainer:
        self.made += 1
        return StubContainer(self.calls, self.made)

    def _run(self, image: str, command: list[str] | None = None, **options: Any) -> Any:
        self.calls.append(("run", image, command, options))
        return self._container() if options.get("detach") else b""

    def _create(self, image: str, **options: Any) -> StubContainer:
        self.calls.append(("create", image, options))
        return self._container()

    def _create_volume(self, **options: Any) -> Any:
        self.calls.append(("volumes.create", options))
        return types.SimpleNamespace(name="v1")

    def _remove_volume(self, name: str, force: bool = False) -> None:
        self.calls.append(("remove_volume", name, force))
        if name == "busy":
            raise docker.errors.APIError("409 Client Error: volume is in use")

    def _exec_create(self, container: str, command: list[str], user: str) -> dict[str, str]:
        self.calls.append(("exec_create", container, command, user))
        return {"Id": "e1"}

    def _post(self, url: str, json: dict[str, Any], timeout: int) -> Any:
        self.calls.append(("post", url, json, timeout))
        # stdout, then stderr, as dockerd frames them on a non-TTY stream
        body = b"\1\0\0\0\0\0\0\4out\n" + b"\2\0\0\0\0\0\0\4err\n"
        return types.SimpleNamespace(status_code=200, content=body, text="")

    def _exec_inspect(self, exec_id: str) -> dict[str, Any]:
        self.calls.append(("exec_inspect", exec_id))
        return {"Running": False, "ExitCode": 3}

    def _inspect_image(self, image: str) -> dict[str, Any]:
        if image == "missing":
            raise docker.errors.ImageNotFound("No such image: missing")
        return {"RootFS": {"Layers": ["sha256:aa", "sha256:bb"]}}


@pytest.fixture
def stub(monkeypatch: pytest.MonkeyPatch) -> StubClient:
    monkeypatch.setattr(temporary, "SESSION", "session")
    return StubClient()


def labels(**extra: str) -> dict[str, str]:
    return {temporary.LABEL: "session", **extra}


def test_a_check_container_publishes_its_port_on_loopback_and_is_removed(
        stub: StubClient) -> None:
    engine = Engine(client=stub)
    health = Healthcheck(interval=1, timeout=5, retries=3, start_period=60)
    with started(engine, "sha256:img", port=8888, env={"A": "1"}, token="tok",
                 healthcheck=health, user="23456:23456", read_only=True,
                 tmpfs={"/tmp": "rw,exec,mode=1777"}) as server:
        assert server.base == "http://127.0.0.1:32768"
        assert server.logs() == "started\n"
    assert stub.calls[0] == ("run", "sha256:img", None, {
        "detach": True, "environment": {"A": "1", "JUPYTER_TOKEN": "tok"},
        "user": "23456:23456", "ports": {"8888/tcp": ("127.0.0.1", None)},
        "read_only": True, "tmpfs": {"/tmp": "rw,exec,mode=1777"},
        "healthcheck": {"interval": 1_000_000_000, "timeout": 5_000_000_000, "retries": 3,
                        "start_period": 60_000_000_000},
        "labels": labels(**{LABEL: "1"})})
    assert stub.calls[-1] == ("remove", "c1", {"force": True, "v": True})


def test_an_idle_container_without_network_and_a_command_in_it(stub: StubClient) -> None:
    engine = Engine(client=stub)
    container = engine.start("sha256:img", ["-c", "sleep 3600"], entrypoint=["/bin/bash"],
                             network="none", labels={LABEL: "1"}, environment={})
    assert container.exec("true", user="1000") == (3, "out\nerr\n")
    assert container.state().status == "running"
    container.remove()
    assert stub.calls == [
        ("run", "sha256:img", ["-c", "sleep 3600"], {
            "detach": True, "entrypoint": ["/bin/bash"], "environment": {},
            "network_mode": "none", "labels": labels(**{LABEL: "1"})}),
        # Started without `Upgrade` (docker-py's exec_run loses what came with the headers)
        ("exec_create", "c1", ["bash", "-c", "true"], "1000"),
        ("post", "http+docker://localhost/v1.41/exec/e1/start",
         {"Detach": False, "Tty": False}, 900),
        ("exec_inspect", "e1"),
        ("reload", "c1"),
        ("remove", "c1", {"force": True}),
    ]


def test_an_exec_stream_is_read_frame_by_frame_and_a_broken_one_refused() -> None:
    frames = b"\1\0\0\0\0\0\0\2a\n" + b"\2\0\0\0\0\0\0\0" + b"\1\0\0\0\0\0\0\1b"
    assert demultiplex(frames) == b"a\nb"
    assert demultiplex(b"") == b""
    with pytest.raises(EngineError, match="inside a frame at byte 10"):
        demultiplex(b"\1\0\0\0\0\0\0\2a\n" + b"\1\0\0\0\0\0\0\5ab")
    with pytest.raises(EngineError, match="not multiplexed at byte 0"):
        demultiplex(b"hello from a TTY")


def test_volumes_mounted_plain_and_nocopy(stub: StubClient) -> None:
    engine = Engine(client=stub)
    volume = engine.create_volume(labels={LABEL: "1"})
    engine.run("sha256:img", ["-c", "chown 1:1 /h"], entrypoint=["/bin/bash"], user="0",
               labels={LABEL: "1"}, volumes=[VolumeMount(volume, "/h")])
    engine.start("sha256:img", volumes=[VolumeMount(volume, "/home/jovyan", nocopy=True)])
    engine.remove_volume(volume)
    assert stub.calls[0] == ("volumes.create", {"labels": labels(**{LABEL: "1"})})
    assert stub.calls[1] == ("run", "sha256:img", ["-c", "chown 1:1 /h"], {
        "remove": True, "entrypoint": ["/bin/bash"], "user": "0",
        "volumes": {"v1": {"bind": "/h", "mode": "rw"}}, "labels": labels(**{LABEL: "1"})})
    assert stub.calls[2] == ("run", "sha256:img", None, {
        "detach": True, "labels": labels(),
        "mounts": [docker.types.Mount(target="/home/jovyan", source="v1", type="volume",
                                      no_copy=True)]})
    assert stub.calls[3] == ("remove_volume", "v1", True)


def test_an_export_streams_a_created_container_then_removes_it(stub: StubClient) -> None:
    engine = Engine(client=stub)
    with engine.export("sha256:img") as chunks:
        assert stub.calls == [("create", "sha256:img", {
            "command": ["/bin/true"], "entrypoint": [], "labels": labels()})]
        assert b"".join(chunks) == b"tarstream"
    assert stub.calls[1:] == [("export", "c1", {"chunk_size": 1 << 20}),
                              ("remove", "c1", {"force": True})]


def test_health_layers_and_version_are_plain_data(stub: StubClient) -> None:
    engine = Engine(client=stub)
    container = engine.start("sha256:img")
    assert container.health() == Health(None, "")
    stub_container = container.sdk
    stub_container.attrs["State"]["Health"] = {"Status": "healthy",
                                               "Log": [{"Output": "a"}, {"Output": "b"}]}
    assert container.health() == Health("healthy", "b")
    assert engine.layer_diff_ids("sha256:img") == ["sha256:aa", "sha256:bb"]
    assert engine.version() == "20.10.24"
    assert engine.description == "docker 20.10.24"


def test_the_sdks_errors_reach_callers_as_engine_errors(stub: StubClient) -> None:
    engine = Engine(client=stub)
    with pytest.raises(EngineError, match="No such image: missing") as caught:
        engine.layer_diff_ids("missing")
    assert isinstance(caught.value, ENGINE_ERRORS)
    with pytest.raises(EngineError, match="volume is in use"):
        engine.remove_volume("busy")



def sdk_client_uses(package: Path) -> list[str]:
    """Where a module outside imagekit/engine/ reads an engine's `client` (the SDK's client
    an Engine holds): `engine.client`, `self.engine.client`, `t.engine.client`..."""
    found = []
    for path in sorted(package.rglob("*.py")):
        if path.is_relative_to(package / "engine"):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Attribute) and node.attr == "client":
                owner = node.value
                name = (owner.id if isinstance(owner, ast.Name) else
                        owner.attr if isinstance(owner, ast.Attribute) else "")
                if "engine" in name:
                    found.append(f"{path.relative_to(package.parent)}:{node.lineno}")
    return found


def test_no_module_outside_the_engine_touches_its_sdk_client() -> None:
    """import-linter (`make lint`) sees imports of docker; this sees the other way to the SDK."""
    assert sdk_client_uses(Path(__file__).resolve().parents[2] / "imagekit") == []


def test_one_container_runs_every_command_and_each_output_comes_back_alone() -> None:
    """The script `outputs_of` runs in the image, run here by bash: each command's stdout
    comes back as it printed it (a missing final newline too), a command's quotes and
    substitutions stay inside its own shell, and the first that fails stops the rest with
    its status and its own stderr."""
    mark = "@@imagekit-output-test"
    commands = ["echo 2.4.6", "printf 4.6.6", "x='a; echo injected'; echo \"$x\" $(echo b)",
                "echo bad >&2; exit 7", "echo never"]
    run = subprocess.run(["bash", "-c", sections_script(mark, commands)], capture_output=True)
    assert run.returncode == 7
    assert sections(mark, run.stdout) == (["2.4.6\n", "4.6.6", "a; echo injected b\n", ""],
                                          False)
    assert sections(mark, run.stderr)[0][3] == "bad\n"
    whole = subprocess.run(["bash", "-c", sections_script(mark, commands[:3])],
                           capture_output=True)
    assert whole.returncode == 0
    outputs, ended = sections(mark, whole.stdout)
    assert ended and len(outputs) == 3
    # A stream cut inside a mark's line, or a command printing a mark, is refused.
    with pytest.raises(BuildFailed, match="mangled"):
        sections(mark, whole.stdout[:whole.stdout.index(b" 1\n") + 2])
    with pytest.raises(BuildFailed, match="mangled"):
        sections(mark, whole.stdout.replace(b" 1\n", b" 2\n"))
