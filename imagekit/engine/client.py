"""The container engine: one interface, two engines (Docker here, Podman in podman.py).

Both serve the Docker API (Podman through `podman system service`), so images and
containers go through the docker SDK for both; what the engines do differently (building,
importing a root file system, pushing, pulling, running a health check, handing an image to
Apptainer) is a method each engine implements.

Every caller outside imagekit.engine goes through Engine (and the Container handles it
returns): none of them imports docker or touches the SDK's client (`make lint` checks it with
import-linter's contract in pyproject.toml).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shlex
import struct
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import docker
import docker.auth
import docker.errors
import docker.types
import requests
import urllib3.exceptions

from imagekit.engine import temporary
from imagekit.engine.archive import image_archive
from imagekit.engine.container import Container, Health, Healthcheck, VolumeMount
from imagekit.engine.emulation import environment, foreign, native
from imagekit.engine.errors import EngineError, engine_errors
from imagekit.errors import BuildFailed, ImagekitError
from imagekit.schema import Platform

if TYPE_CHECKING:
    from imagekit.engine.builders import Builder

EMULATED = 10  # how much longer a command may take in another architecture's image (QEMU)


def split_reference(ref: str) -> tuple[str, str]:
    """`[host[:port]/]path[:tag]` -> (repository, tag); the tag defaults to `latest`.

    A colon before the last '/' belongs to the registry's port, not to a tag.
    """
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:
        return ref[:colon], ref[colon + 1:]
    return ref, "latest"


@dataclass(frozen=True)
class ImageInfo:
    id: str
    labels: dict[str, str]
    size: int
    tags: tuple[str, ...]
    architecture: str
    env: tuple[str, ...]
    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...]
    created: str = ""  # RFC 3339, as the engine reports it


@dataclass(frozen=True)
class Identity:
    """Which engine does the work, as doctor says it, `build --json` records it and the
    published catalog keeps it for each image it built."""

    engine: str  # docker, podman
    version: str
    builder: str  # the builder's description
    image_store: str  # where the engine keeps images (IDs and pushes differ between them)

    def __str__(self) -> str:
        return f"{self.engine} {self.version}, {self.builder}, {self.image_store}"


# What dockerd's `info` says in DriverStatus when its images live in containerd's store (the
# default of Docker 29 for new installs): an image ID is then a manifest or index digest.
CONTAINERD_SNAPSHOTTER = "io.containerd.snapshotter.v1"


class Stop:
    """An operation's stop, asked from another thread: `set` runs at once what the operation
    hooked on it (shutting its connection, ending its process), so that a read or a wait that
    would block ends too."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._set = False
        self._hooks: list[Callable[[], object]] = []

    def set(self) -> None:
        # The hooks run under the lock (they never block): once a hook's block is left, its
        # action cannot run any more.
        with self._lock:
            if self._set:
                return
            self._set = True
            hooks, self._hooks = self._hooks, []
            for hook in hooks:
                with contextlib.suppress(Exception):  # what is stopping may be gone already
                    hook()

    def is_set(self) -> bool:
        return self._set

    @contextlib.contextmanager
    def hook(self, action: Callable[[], object]) -> Iterator[None]:
        """Within the block, `set` runs `action` (at once, if it was set before)."""
        with self._lock:
            now = self._set
            if not now:
                self._hooks.append(action)
        if now:
            with contextlib.suppress(Exception):
                action()
        try:
            yield
        finally:
            with self._lock, contextlib.suppress(ValueError):
                self._hooks.remove(action)


class Engine:
    """Docker, and the part of the interface Podman shares with it (the Docker API)."""

    name = "docker"

    def __init__(self, client: Any | None = None, url: str | None = None) -> None:
        try:
            self.client = client or docker.from_env(timeout=900)
            self.client.ping()
        except docker.errors.DockerException as exc:
            raise ImagekitError(
                f"cannot reach the Docker engine ({exc}); start dockerd or set DOCKER_HOST "
                "(`imagekit doctor` lists what is missing)"
            ) from None
        temporary.use(url)

    @property
    def description(self) -> str:
        return f"docker {self.version()}"

    def version(self) -> str:
        """The engine's version as it reports it ('?' when it does not say)."""
        return str(self.client.version().get("Version", "?"))

    def image_store(self) -> str:
        """Where the engine keeps images: dockerd's own (graph driver) store, or containerd's
        (the snapshotter store)."""
        with engine_errors():
            info = self.client.info()
        driver = str(info.get("Driver") or "?")
        status = {str(k): str(v) for k, v in info.get("DriverStatus") or []}
        if status.get("driver-type") == CONTAINERD_SNAPSHOTTER:
            return f"containerd image store ({driver} snapshotter)"
        return f"classic image store ({driver})"

    def identity(self, builder: Builder) -> Identity:
        return Identity(self.name, self.version(), builder.description, self.image_store())

    def close(self) -> None:
        """Let go of what connecting started (Podman's API service); Docker started nothing."""

    # -- what differs between engines ------------------------------------------------------

    def builder(self, preference: str) -> Builder:
        from imagekit.engine.builders import choose

        return choose(preference, self.client)

    # Root owns the image's files: False for Docker (dockerd runs as root), True for
    # Podman run by a user, whose files belong to the subordinate ids of /etc/subuid.
    rootless = False

    def as_root(self, argv: list[str]) -> list[str]:
        """A command on an image's files that must see their owners as the image does
        (unpacking an export, mksquashfs, removing the files): as it is here; rootless
        Podman runs it in the user's namespace, where the subordinate ids are the image's."""
        return argv

    def import_tar(self, tar: IO[bytes], ref: str, platform: Platform | None = None,
                   comment: str = "imagekit base") -> None:
        """Make a root file system, as a tar stream, an image tagged `ref`: of this machine's
        own platform, or of `platform` (loaded as an archive whose config names it)."""
        if platform is not None and not native(platform):
            with tempfile.TemporaryDirectory(prefix="imagekit-archive-") as tmp:
                self.load(image_archive(tar, ref, platform, Path(tmp), comment))
            return
        repository, tag = split_reference(ref)
        self.client.api.import_image_from_stream(tar, repository=repository, tag=tag)

    def load(self, archive: Path) -> None:
        """Load an image archive (`docker save`'s format), as `docker load` does."""
        with archive.open("rb") as stream:
            for event in self.client.api.load_image(stream):
                if "error" in event:
                    raise BuildFailed(f"loading {archive.name} failed: "
                                      f"{str(event['error'])[:300]}")

    def push(self, ref: str, auth: dict[str, str] | None, stop: Stop | None = None
             ) -> set[str]:
        """Push `ref`; the short IDs (12 hex) of the layers the registry held already, so
        that were not sent. `stop` set (from another thread) ends the push at once: the
        connection is shut, which ends a read that waits on a silent engine too, and dockerd
        cancels a push whose client went away."""
        repository, tag = split_reference(ref)
        api = self.client.api
        # The SDK's own push request (APIClient.push), made here to keep its answer, whose
        # connection `stop` shuts.
        registry, _ = docker.auth.resolve_repository_name(repository)
        header = (docker.auth.encode_header(auth) if auth is not None
                  else docker.auth.get_config_header(api, registry))
        with engine_errors():
            response = api._post_json(api._url("/images/{0}/push", repository), None,
                                      headers={"X-Registry-Auth": header} if header else {},
                                      stream=True, params={"tag": tag})
            api._raise_for_status(response)
        kept: set[str] = set()
        with contextlib.closing(response), \
                stop.hook(response.raw.shutdown) if stop else contextlib.nullcontext():
            try:
                for event in api._stream_helper(response, decode=True):
                    if stop is not None and stop.is_set():
                        break
                    if "error" in event:
                        raise BuildFailed(f"pushing {ref} failed: {str(event['error'])[:300]}")
                    status = str(event.get("status", ""))
                    if status == "Layer already exists" or status.startswith("Mounted from"):
                        kept.add(str(event.get("id", "")))
            except (urllib3.exceptions.HTTPError, requests.RequestException, OSError) as exc:
                # The read that the stop's shutdown broke (urllib3's ProtocolError) is the
                # stop; any other is the engine going away mid-push.
                if stop is None or not stop.is_set():
                    raise EngineError(f"pushing {ref}: the engine's answer broke off "
                                      f"({type(exc).__name__})") from exc
            if stop is not None and stop.is_set():
                raise BuildFailed(f"pushing {ref}: stopped")
        return kept

    @contextlib.contextmanager
    def save(self, image: str, stop: Stop | None = None) -> Iterator[IO[bytes]]:
        """The image as `docker save` gives it, read as it comes: a tar holding its config,
        a manifest.json naming it, and each layer's tar (uncompressed on Docker's own image
        store and Podman's). `stop` set (from another thread) shuts the connection, and a
        read waiting on the engine ends at once; Docker 20.10 answers only once it has
        written the whole image out on its side, and a stop set before then takes effect
        when it does."""
        api = self.client.api
        with engine_errors():
            response = api._get(api._url("/images/{0}/get", image), stream=True)
            api._raise_for_status(response)
        with contextlib.closing(response), \
                stop.hook(response.raw.shutdown) if stop else contextlib.nullcontext():
            try:
                yield response.raw
            except urllib3.exceptions.HTTPError as exc:  # only the engine's answer raises it
                if stop is not None and stop.is_set():
                    raise BuildFailed(f"saving {image}: stopped") from None
                raise EngineError(f"saving {image}: the engine's answer broke off "
                                  f"({type(exc).__name__})") from exc

    def exec(self, container: Container, command: str, user: str = "") -> tuple[int, str]:
        """Exit status and output (stdout and stderr) of `bash -c command` in a running
        container, as `user` (the image's own user when empty).

        Not the SDK's exec_run: it asks for an upgraded connection and then reads the raw
        socket beneath http.client's buffer, so output that arrived with the answer's headers
        is lost, and the exit status still says 0 (docker/docker-py#3332; 57 of 150 short
        commands came back empty from Docker 28 with the machine busy, none this way).
        Without `Upgrade`, dockerd answers 200 and streams until it closes the connection:
        an ordinary response body, read whole through the buffer.
        """
        api = self.client.api
        with engine_errors():
            exec_id = api.exec_create(container.id, ["bash", "-c", command], user=user)["Id"]
        url = f"{api.base_url}/v{api.api_version}/exec/{exec_id}/start"
        try:
            response = api.post(url, json={"Detach": False, "Tty": False}, timeout=api.timeout)
            body = response.content
        except requests.RequestException as exc:
            raise EngineError(f"exec in {container.id[:12]}: {exc}") from exc
        if response.status_code != 200:
            raise EngineError(f"exec in {container.id[:12]}: {response.status_code} "
                              f"{response.text.strip()[:300]}")
        with engine_errors():
            state = api.exec_inspect(exec_id)
            deadline = time.monotonic() + 30  # the stream ends as the process does
            while state.get("Running") and time.monotonic() < deadline:
                time.sleep(0.05)
                state = api.exec_inspect(exec_id)
        code = state.get("ExitCode")
        return -1 if code is None else int(code), demultiplex(body).decode(errors="replace")

    def health(self, container: Container) -> Health:
        """The container's health as the engine reports it."""
        with engine_errors():
            container.sdk.reload()
            state: dict[str, Any] = container.sdk.attrs["State"].get("Health") or {}
        status = state.get("Status")
        log = state.get("Log") or [{}]
        return Health(None if status is None else str(status), str(log[-1].get("Output", "")))

    def apptainer_source(self, ref: str, folder: Path) -> tuple[str, str]:
        """(Bootstrap, From) for an Apptainer definition that starts from the built image."""
        return "docker-daemon", ref

    # -- containers and volumes ------------------------------------------------------------

    def start(self, ref: str, command: list[str] | None = None, *,
              entrypoint: list[str] | None = None, environment: dict[str, str] | None = None,
              user: str | None = None, network: str | None = None, publish: int | None = None,
              volumes: Sequence[VolumeMount] = (), read_only: bool = False,
              tmpfs: dict[str, str] | None = None, healthcheck: Healthcheck | None = None,
              labels: dict[str, str] | None = None) -> Container:
        """Start a container of `ref` in the background: `command` (the image's CMD when
        None) with `entrypoint` (the image's when None), as `user` (the image's when None),
        in `network` ("none": no network; the engine's default when None), its TCP port
        `publish` published on the host's loopback at a port the engine picks
        (Container.host_port), `tmpfs` {path: options}, the image's HEALTHCHECK with
        `healthcheck`'s timing. It carries this session's temporary labels (and `labels`),
        so an interrupted run removes it; the caller removes it (Container.remove)."""
        options = self._options(entrypoint, environment, user, network, publish, volumes,
                                read_only, tmpfs, healthcheck, labels)
        if healthcheck is not None:
            # The image's own command, said again: Docker keeps it when only the timing is
            # given, Podman 5 refuses a health check without one.
            test = self.healthcheck_test(ref)
            if test:
                options["healthcheck"]["test"] = test
        with engine_errors():
            sdk = self.client.containers.run(ref, command, detach=True, **options)
        return Container(self, sdk)

    def healthcheck_test(self, ref: str) -> list[str]:
        """The image's HEALTHCHECK command (`["CMD", ...]`), or [] when it has none."""
        with engine_errors():
            config = self.client.api.inspect_image(ref).get("Config") or {}
        return [str(word) for word in (config.get("Healthcheck") or {}).get("Test") or []]

    def run(self, ref: str, command: list[str] | None = None, *,
            entrypoint: list[str] | None = None, environment: dict[str, str] | None = None,
            user: str | None = None, network: str | None = None,
            volumes: Sequence[VolumeMount] = (), labels: dict[str, str] | None = None) -> None:
        """Run a container of `ref` (options as start's) to its end and remove it; EngineError
        when it cannot start or exits with a status other than 0."""
        options = self._options(entrypoint, environment, user, network, None, volumes,
                                False, None, None, labels)
        with engine_errors():
            self.client.containers.run(ref, command, remove=True, **options)

    def _options(self, entrypoint: list[str] | None, environment: dict[str, str] | None,
                 user: str | None, network: str | None, publish: int | None,
                 volumes: Sequence[VolumeMount], read_only: bool, tmpfs: dict[str, str] | None,
                 healthcheck: Healthcheck | None, labels: dict[str, str] | None,
                 ) -> dict[str, Any]:
        """The SDK's keyword arguments for a container: only those asked for, so the engine's
        defaults hold for the rest."""
        options: dict[str, Any] = {}
        if entrypoint is not None:
            options["entrypoint"] = entrypoint
        if environment is not None:
            options["environment"] = environment
        if user is not None:
            options["user"] = user
        if network is not None:
            options["network_mode"] = network
        if publish is not None:
            options["ports"] = {f"{publish}/tcp": ("127.0.0.1", None)}
        named = {v.volume: {"bind": v.target, "mode": "rw"} for v in volumes if not v.nocopy}
        if named:
            options["volumes"] = named
        mounts = [docker.types.Mount(target=v.target, source=v.volume, type="volume",
                                     no_copy=True) for v in volumes if v.nocopy]
        if mounts:
            options["mounts"] = mounts
        if read_only:
            options["read_only"] = True
        if tmpfs is not None:
            options["tmpfs"] = tmpfs
        if healthcheck is not None:
            second = 1_000_000_000  # the API counts in nanoseconds
            options["healthcheck"] = {
                "interval": round(healthcheck.interval * second),
                "timeout": round(healthcheck.timeout * second),
                "retries": healthcheck.retries,
                "start_period": round(healthcheck.start_period * second),
            }
        options["labels"] = temporary.labels(**(labels or {}))
        return options

    def create_volume(self, labels: dict[str, str] | None = None) -> str:
        """A new named volume carrying this session's temporary labels (and `labels`): its
        name."""
        with engine_errors():
            volume = self.client.volumes.create(labels=temporary.labels(**(labels or {})))
        return str(volume.name)

    def remove_volume(self, name: str) -> None:
        """Remove a volume, even one a container still names (EngineError if one uses it)."""
        with engine_errors():
            self.client.api.remove_volume(name, force=True)

    @contextlib.contextmanager
    def _unstarted(self, image: str) -> Iterator[Any]:
        """A container made of the image for a purpose (never started), removed afterwards:
        the SDK's container."""
        with engine_errors():
            sdk = self.client.containers.create(image, command=["/bin/true"], entrypoint=[],
                                                labels=temporary.labels())
        try:
            yield sdk
        finally:
            Container(self, sdk).remove()

    @contextlib.contextmanager
    def export(self, image: str) -> Iterator[Iterator[bytes]]:
        """The image's file system as `docker export` gives it: a tar stream, in chunks, of a
        container made of it (never started) for the purpose and removed afterwards."""
        with self._unstarted(image) as sdk:
            yield _exported(sdk)

    @contextlib.contextmanager
    def layer_dirs(self, image: str) -> Iterator[list[Path] | None]:
        """The image's layers as the folders the engine keeps them in, the top one first,
        when this process can read them as they are: dockerd's overlay2 store on this
        machine, its owners not shifted (no rootless dockerd, no user-namespace remapping),
        read as root. None otherwise (another driver or the containerd store, an engine
        whose folders are not this machine's, not root): export() gives the files.

        While it is open, a container made of the image (never started, removed at the
        end) keeps the engine from deleting those folders."""
        if os.geteuid() != 0:
            yield None
            return
        with engine_errors():
            driver = self.client.api.inspect_image(image).get("GraphDriver") or {}
            shifted = any("rootless" in str(o) or "userns" in str(o)
                          for o in self.client.info().get("SecurityOptions") or [])
        data = driver.get("Data") or {}
        found = [str(data.get("UpperDir") or ""), *str(data.get("LowerDir") or "").split(":")]
        layers = [Path(folder) for folder in found if folder]
        # An engine in another mount namespace (a chroot) names folders this machine lacks.
        if (driver.get("Name") != "overlay2" or shifted or not data.get("UpperDir")
                or not all(layer.is_dir() for layer in layers)):
            yield None
            return
        with self._unstarted(image):
            yield layers

    # -- images ----------------------------------------------------------------------------

    def layer_diff_ids(self, image: str) -> list[str]:
        """The uncompressed digests (diff IDs, `sha256:...`) of the image's layers, lowest
        first."""
        with engine_errors():
            layers = self.client.api.inspect_image(image)["RootFS"]["Layers"]
        return [str(layer) for layer in layers]

    def image(self, ref: str) -> ImageInfo | None:
        try:
            img = self.client.images.get(ref)
        except docker.errors.ImageNotFound:
            return None
        attrs = img.attrs
        config = attrs.get("Config") or {}
        return ImageInfo(
            id=img.id,
            labels=dict(config.get("Labels") or {}),
            size=int(attrs.get("Size", 0)),
            tags=tuple(img.tags),
            architecture=str(attrs.get("Architecture", "amd64")),
            env=tuple(config.get("Env") or ()),
            entrypoint=tuple(config.get("Entrypoint") or ()),
            cmd=tuple(config.get("Cmd") or ()),
            created=str(attrs.get("Created", "")),
        )

    def tag(self, image_id: str, ref: str) -> None:
        repository, tag = split_reference(ref)
        if not self.client.api.tag(image_id, repository, tag, force=True):
            raise BuildFailed(f"could not tag {image_id} as {ref}")

    def untag(self, ref: str) -> None:
        """Remove one tag; the image stays while other tags or IDs name it."""
        with contextlib.suppress(docker.errors.ImageNotFound):
            self.client.api.remove_image(ref, noprune=True)

    def pull(self, ref: str, platform: Platform | None = None) -> bool:
        repository, tag = split_reference(ref)
        try:
            self.client.images.pull(repository, tag=tag, platform=platform)
        except docker.errors.DockerException:
            return False
        return True

    def pull_digest(self, repository: str, digest: str,
                    auth: dict[str, str] | None = None) -> ImageInfo:
        """Pull REPOSITORY@DIGEST; the image as the engine then holds it."""
        self._pull_exactly(repository, digest, auth)
        info = self.image(f"{repository}@{digest}")
        if info is None:
            raise BuildFailed(f"the engine does not hold {repository}@{digest} after pulling it")
        return info

    def _pull_exactly(self, repository: str, digest: str,
                      auth: dict[str, str] | None) -> None:
        try:
            self.client.api.pull(repository, tag=digest, auth_config=auth)
        except docker.errors.DockerException as exc:
            raise BuildFailed(f"pulling {repository}@{digest} failed: "
                              f"{str(exc).strip()[:300]}") from None

    def output_of(self, ref: str, command: str, timeout: int = 120) -> str:
        """stdout of a shell command run in a throwaway container of the image. Another
        architecture's image runs under QEMU, several times slower: it gets EMULATED times
        the time (`import torch` for pytorch-cuda's version tag took over 120 s on arm64)."""
        [output] = self.outputs_of(ref, [command], timeout)
        return output

    def outputs_of(self, ref: str, commands: Sequence[str], timeout: int = 120) -> list[str]:
        """stdout of each shell command, run one after the other in one throwaway container
        of the image, `timeout` seconds for each (so n times it for all); the first that
        fails stops the rest and is named with its own stderr. One container for all: a
        container costs about 0.5 s to make, run and remove, which a build paid again for
        each of an image's version tags. The commands share the container: what one writes,
        the next sees (version tags only read)."""
        if not commands:
            return []
        info = self.image(ref)
        architecture = info.architecture if info is not None else ""
        if foreign(architecture):
            timeout *= EMULATED
        mark = f"@@imagekit-output-{secrets.token_hex(8)}"
        container = self.client.containers.run(
            ref, ["-c", sections_script(mark, commands)], entrypoint=["/bin/bash"],
            detach=True, network_mode="none", labels=temporary.labels(),
            environment=environment(architecture))
        try:
            try:
                result = container.wait(timeout=timeout * len(commands))
            except requests.exceptions.RequestException:  # the read timed out
                begun, _ = sections(mark, container.logs(stdout=True, stderr=False))
                running = commands[min(max(len(begun), 1), len(commands)) - 1]
                raise BuildFailed(f"{ref}: `{running}` did not finish in "
                                  f"{timeout * len(commands)} s") from None
            outputs, ended = sections(mark, container.logs(stdout=True, stderr=False))
            if result.get("StatusCode", 1) != 0:
                stderr = container.logs(stdout=False, stderr=True)
                errors, _ = sections(mark, stderr)
                if not errors:  # bash itself failed before the first command
                    raise BuildFailed(f"{ref}: `{commands[0]}` failed: "
                                      f"{stderr.decode(errors='replace')}")
                raise BuildFailed(f"{ref}: `{commands[len(errors) - 1]}` failed: {errors[-1]}")
            if not ended or len(outputs) != len(commands):
                raise BuildFailed(f"{ref}: the output of `{'`, `'.join(commands)}` came back "
                                  f"cut ({len(outputs)} of {len(commands)} outputs)")
            return outputs
        finally:
            container.remove(force=True)


def sections_script(mark: str, commands: Sequence[str]) -> str:
    """A bash script that runs each command in a shell of its own (quoted: no command can
    change the script's structure), each output on stdout and stderr preceded by a line
    `MARK N`, and ends stdout with `MARK end`; it stops with the status of the first
    command that fails."""
    lines = []
    for n, command in enumerate(commands):
        lines.append(f"printf '\\n%s %d\\n' {mark} {n}; printf '\\n%s %d\\n' {mark} {n} >&2; "
                     f"/bin/bash -c {shlex.quote(command)} || exit $?")
    lines.append(f"printf '\\n%s end\\n' {mark}")
    return "\n".join(lines)


def sections(mark: str, stream: bytes) -> tuple[list[str], bool]:
    """The outputs of sections_script in order, each without the line break its mark's line
    added before it, and whether the stream reached the script's end. A mark out of order
    or cut short means the stream is not what the script wrote: BuildFailed."""
    found: list[str] = []
    for part in stream.decode(errors="replace").split(f"\n{mark} ")[1:]:
        label, newline, text = part.partition("\n")
        if label == "end" and newline:
            return found, True
        if label != str(len(found)) or not newline:
            raise BuildFailed(f"a command's output came back mangled at its mark {label!r} "
                              f"(after {len(found)} outputs)")
        found.append(text)
    return found, False


def _exported(sdk: Any) -> Iterator[bytes]:
    """A container's export, asked for when first read."""
    with engine_errors():
        yield from sdk.export(chunk_size=1 << 20)


def demultiplex(stream: bytes) -> bytes:
    """The payloads of a non-TTY attach stream, stdout and stderr as they came: each frame is
    an 8-byte header (the stream's number, three zero bytes, the payload's length, 32 bits
    big-endian) and the payload."""
    out, at = bytearray(), 0
    while at < len(stream):
        if len(stream) - at < 8 or stream[at] not in (0, 1, 2):
            raise EngineError(f"the engine's exec stream is not multiplexed at byte {at}")
        (size,) = struct.unpack(">I", stream[at + 4:at + 8])
        payload = stream[at + 8:at + 8 + size]
        if len(payload) != size:
            raise EngineError(f"the engine's exec stream ends inside a frame at byte {at}")
        out += payload
        at += 8 + size
    return bytes(out)
