"""Podman as the engine, rootful or rootless, with no daemon of its own.

Images and containers go through Podman's Docker-compatible API (`podman system service`):
the socket a site already runs (CONTAINER_HOST, or Podman's default socket) or, when none
answers, one started for this process in a private folder and stopped when it exits.
Builds go through `podman build` (buildah), which reads the same `RUN --mount` cache, secret
and bind mounts as BuildKit. Pushes, pulls and imports go through the podman CLI, which
takes a registry's TLS setting and a credentials file (the compatible API takes neither).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import fcntl
import json
import os
import pty
import re
import select
import shutil
import signal
import struct
import subprocess
import tempfile
import termios
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import docker
import docker.errors

from imagekit.credentials import registry_auth_file
from imagekit.engine.builders import Builder, BuildRequest, Progress, cli_args, stream
from imagekit.engine.client import Engine, Stop
from imagekit.engine.container import Container, Health
from imagekit.engine.emulation import native
from imagekit.errors import BuildFailed, ImagekitError
from imagekit.run import run, tail
from imagekit.schema import Platform


def podman_cli() -> str | None:
    return shutil.which("podman")


def _end_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """SIGTERM this process when its parent ends (Linux's PR_SET_PDEATHSIG)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _signal_group(group: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, sig)


class PodmanEngine(Engine):
    name = "podman"

    def __init__(self, insecure: frozenset[str] = frozenset()) -> None:
        cli = podman_cli()
        if cli is None:
            raise ImagekitError("--engine podman: podman is not installed (apt-get install "
                                "podman uidmap slirp4netns; `imagekit doctor` lists the rest)")
        self.cli = cli
        self.rootless = os.geteuid() != 0
        # Registries spoken to over plain HTTP (the catalog's insecure_registry)
        self.insecure = insecure
        self._service: subprocess.Popen[bytes] | None = None
        self._folder: str | None = None
        client, url = self._connect()
        super().__init__(client, url)

    # -- the API service -------------------------------------------------------------------

    def _sockets(self) -> list[str]:
        found = [os.environ["CONTAINER_HOST"]] if os.environ.get("CONTAINER_HOST") else []
        if self.rootless:
            runtime = os.environ.get("XDG_RUNTIME_DIR", f"/run/user/{os.geteuid()}")
            found.append(f"unix://{runtime}/podman/podman.sock")
        else:
            found.append("unix:///run/podman/podman.sock")
        return [url for url in found
                if not url.startswith("unix://") or Path(url[7:]).is_socket()]

    def _connect(self) -> tuple[Any, str]:
        for url in self._sockets():
            with contextlib.suppress(docker.errors.DockerException):
                client = docker.DockerClient(base_url=url, timeout=900)
                client.ping()
                return client, url
        return self._start_service()

    def _start_service(self) -> tuple[Any, str]:
        self._folder = tempfile.mkdtemp(prefix="imagekit-podman-")
        socket = Path(self._folder) / "podman.sock"
        log = Path(self._folder) / "service.log"
        with log.open("wb") as sink:
            # Its own session: Ctrl-C reaches imagekit, which still needs the service to
            # remove what it started, and then stops it (close()).
            # And the kernel stops it when imagekit ends in any way atexit does not see
            # (SIGKILL, a closed terminal's SIGHUP, a CI runner killing the job).
            self._service = subprocess.Popen(
                [self.cli, "system", "service", "--time=0", f"unix://{socket}"],
                stdin=subprocess.DEVNULL, stdout=sink, stderr=sink, start_new_session=True,
                preexec_fn=_end_with_parent)
            atexit.register(self.close)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self._service.poll() is not None:
                break
            if socket.is_socket():
                with contextlib.suppress(docker.errors.DockerException):
                    client = docker.DockerClient(base_url=f"unix://{socket}", timeout=900)
                    client.ping()
                    return client, f"unix://{socket}"
            time.sleep(0.1)
        message = tail(log.read_text(errors="replace"), 5)
        self.close()
        raise ImagekitError(f"`podman system service` did not answer: {message}")

    def close(self) -> None:
        if self._service is not None:
            # The whole process group: rootless Podman re-executes itself in its user
            # namespace as a child, which outlived a service stopped by its first process
            # alone (found running, reparented to init, an hour after its imagekit ended).
            group = self._service.pid
            _signal_group(group, signal.SIGTERM)
            try:
                self._service.wait(timeout=20)
            except subprocess.TimeoutExpired:
                _signal_group(group, signal.SIGKILL)
                self._service.wait()
            _signal_group(group, signal.SIGKILL)  # anything of it still there
        self._service = None
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None

    @property
    def description(self) -> str:
        how = "rootless" if self.rootless else "rootful"
        return f"podman {self.version()} ({how})"

    def storage_driver(self) -> str:
        """containers/storage's driver (overlay, vfs...), '' when Podman does not say."""
        return run([self.cli, "info", "--format", "{{.Store.GraphDriverName}}"], check=False,
                   timeout=60).stdout.decode().strip()

    def image_store(self) -> str:
        return f"containers/storage ({self.storage_driver() or '?'})"

    def healthcheck_test(self, ref: str) -> list[str]:
        # Podman 5's Docker API leaves the health check out of an image's inspection.
        said = run([self.cli, "image", "inspect", "--format", "{{json .HealthCheck}}", ref],
                   timeout=60)
        found = json.loads(said.stdout.decode() or "null") or {}
        return [str(word) for word in found.get("Test") or []]

    # -- what Podman does its own way ------------------------------------------------------

    def builder(self, preference: str) -> Builder:
        if preference not in ("auto", "podman"):
            raise ImagekitError(f"--builder {preference}: the Podman engine builds with "
                                "`podman build` (--builder auto or podman)")
        return PodmanBuilder(self.cli)

    def as_root(self, argv: list[str]) -> list[str]:
        return [self.cli, "unshare", *argv] if self.rootless else argv

    @contextlib.contextmanager
    def layer_dirs(self, image: str) -> Iterator[list[Path] | None]:
        yield None  # containers/storage's folders: its export is the way to the files

    def import_tar(self, tar: IO[bytes], ref: str, platform: Platform | None = None,
                   comment: str = "imagekit base") -> None:
        if platform is not None and not native(platform):
            super().import_tar(tar, ref, platform, comment)
            return
        try:
            result = subprocess.run([self.cli, "import", "--quiet", "-", ref], stdin=tar,
                                    capture_output=True, timeout=1800, check=False)
        except subprocess.TimeoutExpired:
            raise BuildFailed(f"podman import {ref}: timed out after 1800 s") from None
        if result.returncode != 0:
            raise BuildFailed(f"podman import {ref} failed: "
                              f"{result.stderr.decode(errors='replace').strip()[-300:]}")

    def load(self, archive: Path) -> None:
        result = subprocess.run([self.cli, "load", "--quiet", "--input", str(archive)],
                                capture_output=True, timeout=1800, check=False)
        if result.returncode != 0:
            raise BuildFailed(f"podman load {archive.name} failed: "
                              f"{result.stderr.decode(errors='replace').strip()[-300:]}")

    def _registry_flags(self, ref: str, auth: dict[str, str] | None,
                        folder: Path) -> list[str]:
        host = ref.split("/", 1)[0]
        flags = [f"--tls-verify={'false' if host in self.insecure else 'true'}"]
        if auth is not None:
            flags += ["--authfile", str(registry_auth_file(
                folder, host, auth["username"], auth["password"]))]
        return flags

    def push(self, ref: str, auth: dict[str, str] | None, stop: Stop | None = None
             ) -> set[str]:
        with tempfile.TemporaryDirectory(prefix="imagekit-push-") as tmp:
            # Docker's manifest format (v2s2), as `docker push` sends: the image is built in
            # it (podman build --format docker), so its config digest is the image ID.
            argv = [self.cli, "push", "--format", "v2s2",
                    *self._registry_flags(ref, auth, Path(tmp)), ref, f"docker://{ref}"]
            status, output = _on_terminal(argv, timeout=3600, stop=stop)
        if status != 0:
            said = [line for line in output.splitlines() if line.startswith("Error")]
            raise BuildFailed(f"pushing {ref} failed: {(said or [tail(output, 3)])[-1][:300]}")
        # Only on a terminal does podman say which layers the registry held already:
        # "Copying blob 3f4ca61aafcd skipped: already exists".
        return set(re.findall(r"Copying blob (?:sha256:)?([0-9a-f]{12})\w* skipped", output))

    def pull(self, ref: str, platform: Platform | None = None) -> bool:
        with tempfile.TemporaryDirectory(prefix="imagekit-pull-") as tmp:
            result = run([self.cli, "pull", "--quiet",
                          *([f"--platform={platform}"] if platform else []),
                          *self._registry_flags(ref, None, Path(tmp)), ref],
                         timeout=3600, check=False)
        return result.returncode == 0

    def _pull_exactly(self, repository: str, digest: str,
                      auth: dict[str, str] | None) -> None:
        with tempfile.TemporaryDirectory(prefix="imagekit-pull-") as tmp:
            ref = f"{repository}@{digest}"
            run([self.cli, "pull", "--quiet", *self._registry_flags(ref, auth, Path(tmp)), ref],
                timeout=3600)

    def exec(self, container: Container, command: str, user: str = "") -> tuple[int, str]:
        # Through the CLI, not the API service: the SDK's `exec_run` lost a short command's
        # output now and then when the machine was busy and still reported exit 0 -- 3 of
        # 300 under load here, 0 of 300 `podman exec`. (The same loss as Docker's, the SDK's
        # own: Engine.exec; the CLI also keeps Podman's exec out of its API service.)
        result = run([self.cli, "exec", *(["--user", user] if user else []), container.id,
                      "bash", "-c", command], timeout=900, check=False)
        return result.returncode, (result.stdout + result.stderr).decode(errors="replace")

    def health(self, container: Container) -> Health:
        # Podman schedules HEALTHCHECK runs with systemd timers; where there is no systemd
        # (a container, a CI runner, this project's VM) nothing runs them, so run the image's
        # own check the way the timer would, then read the state it recorded.
        run([self.cli, "healthcheck", "run", container.id], timeout=120, check=False)
        return super().health(container)

    def apptainer_source(self, ref: str, folder: Path) -> tuple[str, str]:
        # Apptainer reads Docker's daemon, not Podman's storage: hand it an archive.
        archive = folder / "image.tar"
        run([self.cli, "save", "--quiet", "--format", "docker-archive", "--output",
             str(archive), ref], timeout=3600)
        return "docker-archive", str(archive)


class PodmanBuilder(Builder):
    name = "podman"

    def __init__(self, cli: str) -> None:
        self.cli = cli
        self.description = f"buildah via `{Path(cli).name} build`"

    def build(self, request: BuildRequest, progress: Progress) -> str:
        with tempfile.TemporaryDirectory(prefix="imagekit-build-") as tmp:
            context = Path(tmp) / "context"
            # As in the tar BuildKit reads: every file with its mode and time 0, every
            # folder 0755 whatever the umask, so that the same context makes the same layers.
            for path, data in request.context.files.items():
                target = context / path
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
                target.chmod(request.context.modes[path])
                os.utime(target, (0, 0))
            for folder in sorted({f.parent for f in context.rglob("*")}):
                folder.chmod(0o755)
                os.utime(folder, (0, 0))
            iidfile = Path(tmp) / "iid"
            # Docker's image format keeps HEALTHCHECK and SHELL, which OCI's drops;
            # --http-proxy=false: proxies reach RUN only as the site's build arguments below,
            # as under BuildKit, never from whatever the caller's environment holds.
            # request.cache_from is not passed: buildah 1.28's --cache-from names a
            # repository of cache images, not the inline cache BuildKit writes.
            argv = [self.cli, "build", "--format", "docker", "--layers", "--http-proxy=false",
                    *([f"--platform={request.platform}"] if request.platform else []),
                    "--iidfile", str(iidfile), "--file", str(context / "Dockerfile"),
                    *cli_args(request.labels, request.build_args, request.secrets, Path(tmp)),
                    str(context)]
            env = {**os.environ, **request.build_args, "TMPDIR": str(build_folder())}
            status, log = stream(argv, env, progress)
            if status != 0 or not iidfile.is_file():
                raise BuildFailed(f"{request.name}: build failed at {_failed_step(log)}\n"
                                  f"{tail(chr(10).join(log), 30)}")
            image_id = iidfile.read_text().strip()
            return image_id if image_id.startswith("sha256:") else f"sha256:{image_id}"


def build_folder() -> Path:
    """The user's own folder for buildah's cache mounts (and its temporary files).

    buildah 1.28 keeps every `RUN --mount=type=cache` under $TMPDIR/buildah-cache, with
    /var/tmp as the default: one folder for every user of the machine, so whoever builds
    first owns it (a rootless build then cannot write what root made) and any user could
    plant files in another's apt or uv cache. Each user gets a folder only they can open.
    """
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    folder = cache / "imagekit" / "podman-build"
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    return folder


def _on_terminal(argv: list[str], timeout: float, stop: Stop | None = None
                 ) -> tuple[int, str]:
    """Run a command on a pseudo-terminal (a wide one); its exit status and what it wrote,
    progress redraws removed. `stop` set (from another thread) terminates it at once, and
    kills it 10 s later if it is still there.

    With a `stop`, the command runs in a session of its own (so Ctrl-C at the terminal reaches
    it only through the stop, which imagekit sets as it unwinds) and ends with imagekit."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 250, 0, 0))
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave,
                            start_new_session=stop is not None,
                            preexec_fn=_end_with_parent if stop is not None else None)
    os.close(slave)
    try:
        with stop.hook(proc.terminate) if stop else contextlib.nullcontext():
            chunks = _read_until_it_ends(master, proc, argv, timeout, stop)
        if stop is not None and stop.is_set():  # it ended, or was terminated, on the stop
            raise BuildFailed(f"{' '.join(argv[:2])}: stopped")
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    text = b"".join(chunks).decode(errors="replace")
    return proc.returncode, re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text).replace("\r", "")


def _read_until_it_ends(master: int, proc: subprocess.Popen[bytes], argv: list[str],
                        timeout: float, stop: Stop | None) -> list[bytes]:
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if stop is not None and stop.is_set():  # terminated: the caller's wait, then a kill
            break
        ready, _, _ = select.select([master], [], [], 1.0)
        if not ready:
            if proc.poll() is not None:
                break
            continue
        try:
            chunk = os.read(master, 1 << 16)
        except OSError:  # the terminal closed: the command ended
            break
        if not chunk:
            break
        chunks.append(chunk)
    else:
        proc.kill()
        raise BuildFailed(f"{' '.join(argv[:2])}: timed out after {timeout:.0f} s")
    return chunks


def _failed_step(log: list[str]) -> str:
    for line in reversed(log):
        found = re.match(r'Error: building at STEP "(.*)": ', line)
        if found:
            return found.group(1)[:200]
    step = next((line for line in reversed(log) if line.startswith("STEP ")), None)
    return step or "an unknown step"
