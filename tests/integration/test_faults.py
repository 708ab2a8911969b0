"""Given a fault in the middle of a step (the engine going away, Ctrl-C, SIGTERM, a full
disk), then imagekit says so in one line, exits non-zero, moves no tag, leaves no partial
file, container or volume behind, and a rerun converges."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration import suite
from tests.integration.conftest import ROOT, imagekit

pytestmark = pytest.mark.integration

TEMPORARY = "io.imagekit.temporary"
TINY = """\
description: A tiny stack for fault tests.
extends: base
pip: [six]
post:
  - sleep 8; echo {token}
checks:
  imports: [six]
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One project for the module: each fault test changes tiny's input itself (a new token
    in its slow step), so that what it interrupts really runs."""
    folder = tmp_path_factory.mktemp("faults")
    catalog = suite.copy_project(folder)
    _change_tiny(folder)
    catalog.write_text(
        catalog.read_text().replace(
            "  - stack: pyspark\n", "  - stack: pyspark\n  - stack: tiny\n"
                                    "    formats: [docker, sif]\n"))
    return folder


def _change_tiny(project: Path) -> None:
    """A new input for tiny, so that its slow step really runs (not from the layer cache)."""
    (project / "stacks/tiny.yaml").write_text(TINY.format(token=secrets.token_hex(8)))


def _start(*args: str, catalog: Path, env: dict[str, str] | None = None
           ) -> subprocess.Popen[str]:
    """The CLI in its own process group, as a terminal runs it (Ctrl-C reaches the group)."""
    argv = [sys.executable, "-m", "imagekit", *args, "--catalog", str(catalog)]
    return subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True,
                            env={**os.environ, "COLUMNS": "200", **(env or {})})


def _wait_for(proc: subprocess.Popen[str], seen: Callable[[str], bool],
              timeout: float = 600) -> list[str]:
    """Read the CLI's output until a line satisfies `seen`."""
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    for line in proc.stdout:
        lines.append(line)
        if seen(line):
            return lines
        if time.monotonic() > deadline:
            break
    raise AssertionError("never saw the moment to strike:\n" + "".join(lines[-40:]))


def _finish(proc: subprocess.Popen[str]) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=300)
    return proc.returncode, out


def _made(client: Any, proc: subprocess.Popen[str], running: bool = False
          ) -> tuple[list[str], list[str]]:
    """The containers and volumes the imagekit process `proc` made and still holds: each
    carries its maker's session (its pid first), so what other processes on the engine hold
    at the moment is not counted."""
    mine = f"{proc.pid}-"
    selector = {"label": TEMPORARY}
    containers = [c.name for c in client.containers.list(all=not running, filters=selector,
                                                                 ignore_removed=True)
                  if c.labels.get(TEMPORARY, "").startswith(mine)]
    volumes = [v.name for v in client.volumes.list(filters=selector)
               if (v.attrs.get("Labels") or {}).get(TEMPORARY, "").startswith(mine)]
    return containers, volumes


def _leftovers(client: Any, proc: subprocess.Popen[str]) -> list[str]:
    containers, volumes = _made(client, proc)
    return containers + volumes


def _image_id(client: Any, ref: str) -> str | None:
    try:
        return str(client.images.get(ref).id)
    except Exception:
        return None


REF = suite.ref("tiny")
# The SIF fault tests are about what an interrupted or failed conversion leaves, not the
# squashfs: gzip level 1 is enough, and every conversion of the module uses it.
SIF = ("--sif-level", "1")


@pytest.fixture(scope="module")
def tiny(project: Path, build: Callable[..., Any], client: Any) -> Iterator[Path]:
    """tiny built once for the module, so that a fault has a tag it must not move (each test
    compares with the tag as it found it)."""
    build("base")
    catalog = project / "catalog.yaml"
    imagekit("build", "tiny", "--format", "docker", "--plain", catalog=catalog)
    yield catalog
    for image in client.images.list(suite.repository("tiny")):
        client.images.remove(image.id, force=True)


@pytest.mark.docker_engine  # points DOCKER_HOST at nothing
def test_no_engine_is_one_line_and_exit_2(project: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "imagekit", "build", "scipy", "--catalog",
         str(project / "catalog.yaml")], capture_output=True, text=True, cwd=ROOT,
        env={**os.environ, "DOCKER_HOST": f"unix://{project}/no-engine.sock"})
    assert result.returncode == 2
    assert "cannot reach the Docker engine" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stdout + result.stderr


class EngineRelay:
    """The engine's socket, relayed, so that a test can make the engine vanish mid-step."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.server = socket.socket(socket.AF_UNIX)
        self.server.bind(str(path))
        self.server.listen(64)
        self.open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX)
            upstream.connect("/var/run/docker.sock")
            self.open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        self.server.close()
        for s in self.open:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


@pytest.mark.docker_engine  # kills dockerd
def test_the_engine_vanishing_mid_build_moves_no_tag(tiny: Path, client: Any,
                                                     tmp_path: Path) -> None:
    before = _image_id(client, REF)
    _change_tiny(tiny.parent)
    relay = EngineRelay(tmp_path / "engine.sock")
    proc = _start("build", "tiny", "--format", "docker", "--plain", catalog=tiny,
                  env={"DOCKER_HOST": f"unix://{relay.path}"})
    seen = _wait_for(proc, lambda line: "RUN bash" in line and "tiny-post.sh" in line)
    time.sleep(1)
    relay.cut()
    code, out = _finish(proc)
    out = "".join(seen) + out
    assert code == 1, out[-3000:]
    assert "tiny" in out and "failed" in out
    assert "Traceback" not in out
    assert _image_id(client, REF) == before
    assert _leftovers(client, proc) == []
    rerun = imagekit("build", "tiny", "--format", "docker", "--plain", catalog=tiny)
    assert "built" in rerun.stdout
    assert _image_id(client, REF) != before


def test_ctrl_c_during_a_build_moves_no_tag_and_leaves_nothing(tiny: Path,
                                                                client: Any) -> None:
    before = _image_id(client, REF)
    _change_tiny(tiny.parent)
    proc = _start("build", "tiny", "--format", "docker", "--plain", catalog=tiny)
    _wait_for(proc, lambda line: "RUN bash" in line and "tiny-post.sh" in line)
    time.sleep(1)
    os.killpg(proc.pid, signal.SIGINT)
    code, out = _finish(proc)
    assert code == 130, out[-3000:]
    assert "interrupted" in out and "Traceback" not in out
    assert _image_id(client, REF) == before
    assert _leftovers(client, proc) == []
    rerun = imagekit("build", "tiny", "--format", "docker", "--plain", catalog=tiny)
    assert "built" in rerun.stdout
    assert _image_id(client, REF) != before


@pytest.mark.parametrize("how", ["SIGINT", "SIGTERM"])
def test_interrupting_a_test_removes_its_containers_and_volumes(tiny: Path, client: Any,
                                                                how: str) -> None:
    proc = _start("test", "tiny", catalog=tiny)
    # Strike while the random-uid check holds both a container and its volume.
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        containers, volumes = _made(client, proc, running=True)
        if containers and volumes:
            break
        time.sleep(0.2)
    else:
        raise AssertionError("the check never started its volume")
    if how == "SIGINT":
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in a terminal
    else:
        proc.send_signal(signal.SIGTERM)  # a CI runner stopping the job
    code, out = _finish(proc)
    assert code == 130, out[-3000:]
    assert "interrupted" in out and "Traceback" not in out
    assert _leftovers(client, proc) == []


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_ctrl_c_during_sif_conversion_keeps_the_old_sif(tiny: Path, client: Any,
                                                         tmp_path: Path) -> None:
    dist = tiny.parent / "dist"
    shutil.rmtree(dist, ignore_errors=True)  # what other tests of the module left there
    imagekit("build", "tiny", "--format", "sif", *SIF, "--sif-method", "native", "--plain",
             catalog=tiny)
    sif = dist / "tiny_latest.sif"
    old = _sha(sif)
    sif.with_suffix(".sif.json").unlink()  # no record of it: it is converted again
    work = tmp_path / "work"
    work.mkdir()
    proc = _start("build", "tiny", "--format", "sif", *SIF, "--sif-method", "native", "--plain",
                  catalog=tiny, env={"IMAGEKIT_WORKDIR": str(work)})
    deadline = time.monotonic() + 300
    while not any(work.glob("imagekit-sif-*/rootfs.sqfs")) and time.monotonic() < deadline:
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGINT)
    code, out = _finish(proc)
    assert code == 130, out[-3000:]
    assert "Traceback" not in out
    assert _sha(sif) == old
    assert sorted(p.name for p in dist.iterdir()) == ["tiny_latest.sif"]
    assert list(work.iterdir()) == []
    assert _leftovers(client, proc) == []
    imagekit("build", "tiny", "--format", "sif", *SIF, "--sif-method", "native", "--plain",
             catalog=tiny)
    assert json.loads(sif.with_suffix(".sif.json").read_text())["status"] == "built"


def test_a_full_disk_while_writing_a_sif_leaves_no_partial_file(tiny: Path, client: Any
                                                                 ) -> None:
    dist = tiny.parent / "dist"
    shutil.rmtree(dist, ignore_errors=True)
    dist.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(dist)], check=True)
    try:
        proc = _start("build", "tiny", "--format", "sif", *SIF, "--sif-method", "native",
                      "--plain", catalog=tiny)
        code, output = _finish(proc)
        assert code == 1, output[-3000:]
        assert "no space left on device" in output.lower()
        assert "Traceback" not in output
        assert list(dist.iterdir()) == []
        assert _leftovers(client, proc) == []
    finally:
        subprocess.run(["umount", str(dist)], check=True)
    imagekit("build", "tiny", "--format", "sif", *SIF, "--sif-method", "native", "--plain",
             catalog=tiny)
    assert (dist / "tiny_latest.sif").stat().st_size > 8 << 20
