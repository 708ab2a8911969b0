"""Image layers compressed once, with zstd, by imagekit (catalog.yaml: `layers: {compression:
zstd}`).

The engine's own push compresses every layer with gzip as it sends it, on one core, and again
for every registry that lacks it. With zstd, imagekit pushes the image itself: it reads the
engine's archive of the image (`docker save`'s format, read as it comes, never written out
whole), compresses each layer the repository lacks with zstd on every core while the one
before is uploaded, and puts an OCI manifest whose config is the image's own config, byte
for byte: its digest is the image ID, so the registry's manifest is seen to hold the tested
image exactly as after the engine's push (`registry.holds`).

Which blob each layer became is kept in the user's cache (`LayerIndex`, per level and zstd
library: the same layer always becomes the same bytes, on every core count). A layer pushed
once is then found in the repository, or mounted from a repository it was pushed to, without
being read or compressed again; an image all of whose blobs are there is not read from the
engine at all. A child image's archive still holds its parent's layers: those are hashed as
they pass (their size tells them), not compressed.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import queue
import tarfile
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast

import zstandard

from imagekit.engine.client import Engine, Stop
from imagekit.errors import BuildFailed
from imagekit.files import write_atomically

if TYPE_CHECKING:
    from imagekit.publish.registry import Registry

ZSTD_LAYER = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CHUNK = 1 << 20
SMALL = 4 << 20  # archive members read whole: the config, manifest.json, tiny layers
REPOSITORIES_KEPT = 8  # per layer, the repositories it was pushed to (to mount it from)


@dataclass(frozen=True)
class Blob:
    digest: str  # of the compressed layer, as the registry stores it
    size: int  # compressed
    raw: int  # the layer's tar, uncompressed


def short(digest: str) -> str:
    return digest.removeprefix("sha256:")[:12]


def cache_home() -> Path:
    """The user's cache ($XDG_CACHE_HOME, else ~/.cache; a user without a home gets one in
    the temporary folder)."""
    if found := os.environ.get("XDG_CACHE_HOME"):
        return Path(found)
    try:
        return Path.home() / ".cache"
    except RuntimeError:
        return Path(tempfile.gettempdir()) / f"imagekit-cache-{os.getuid()}"


class LayerIndex:
    """Layer (diff ID) -> the zstd blob it became at one level, and where it was pushed (an
    image's config too, under its own digest, the image ID): a
    JSON file in the user's cache, merged with what another imagekit wrote meanwhile and
    replaced whole, never left half-written. A lost or unreadable index costs one
    compression of each layer, nothing else."""

    def __init__(self, level: int, folder: Path | None = None) -> None:
        folder = folder or cache_home() / "imagekit" / "layers"
        self.path = folder / f"zstd-{level}-{zstandard.__version__}.json"
        self._entries = self._read()
        self._changed: dict[str, dict[str, Any]] = {}

    def _read(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return {k: v for k, v in data.items() if isinstance(v, dict)} \
            if isinstance(data, dict) else {}

    def blob(self, diff_id: str) -> Blob | None:
        entry = self._entries.get(diff_id)
        try:
            return Blob(str(entry["digest"]), int(entry["size"]), int(entry["raw"])) \
                if entry else None
        except (KeyError, TypeError, ValueError):
            return None

    def repositories(self, diff_id: str) -> list[str]:
        found = (self._entries.get(diff_id) or {}).get("repositories")
        return [str(r) for r in found] if isinstance(found, list) else []

    def record(self, diff_id: str, blob: Blob, repository: str) -> None:
        known = self.blob(diff_id)
        others = self.repositories(diff_id) if known == blob else []
        entry = {"digest": blob.digest, "size": blob.size, "raw": blob.raw,
                 "repositories": [repository, *[r for r in others if r != repository]]
                 [:REPOSITORIES_KEPT]}
        if self._entries.get(diff_id) != entry:
            self._entries[diff_id] = self._changed[diff_id] = entry

    def save(self) -> None:
        if not self._changed:
            return
        entries = self._read()
        for diff, mine in self._changed.items():
            theirs = entries.get(diff)
            if isinstance(theirs, dict) and theirs.get("digest") == mine["digest"] \
                    and isinstance(theirs.get("repositories"), list):
                # Another imagekit pushed the same blob meanwhile: both lists are kept.
                mine = {**mine, "repositories": list(dict.fromkeys(
                    [*mine["repositories"], *map(str, theirs["repositories"])]))
                    [:REPOSITORIES_KEPT]}
            entries[diff] = mine
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(self.path, json.dumps(entries, sort_keys=True))
        self._changed = {}


class _Uploads:
    """Compressed layers uploaded in a thread of their own, one after another, while the
    next is compressed: at most one waits its turn, so the disk holds three compressed
    layers at most (one going up, one waiting, one being written). A layer the repository
    turns out to hold already is not sent (`kept`). A stop, or `abandon`, ends the upload
    under way at its next chunk and drops the rest."""

    def __init__(self, registry: Registry, repository: str, stop: Stop, what: str) -> None:
        self._registry, self._repository, self._stop, self._what = \
            registry, repository, stop, what
        self._queue: queue.Queue[tuple[Path, str] | None] = queue.Queue(maxsize=1)
        self._error: BaseException | None = None
        self._abandoned = threading.Event()
        self.kept: set[str] = set()
        self._thread = threading.Thread(target=self._run, name=f"upload {repository}",
                                        daemon=True)
        self._thread.start()

    def _halted(self) -> bool:
        return self._abandoned.is_set() or self._stop.is_set()

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            path, digest = item
            try:
                if self._error is not None:
                    continue
                if self._halted():
                    raise BuildFailed(f"pushing {self._what}: stopped")
                if self._registry.blob_size(self._repository, digest) is not None:
                    self.kept.add(short(digest))
                else:
                    self._registry.put_blob_file(self._repository, path, digest, self._halted)
            except BaseException as exc:  # handed to the caller, who raises it
                self._error = exc
            finally:
                path.unlink(missing_ok=True)

    def put(self, path: Path, digest: str) -> None:
        self._check()
        self._queue.put((path, digest))

    def _check(self) -> None:
        if self._error is not None:
            raise self._error

    def finish(self) -> None:
        """Wait for every upload; raise the first failure (a stop's too)."""
        self._queue.put(None)
        self._thread.join()
        self._check()

    def abandon(self) -> None:
        """End the upload under way at its next chunk, drop the waiting one, and wait for
        the thread (an upload's chunk is seconds at most)."""
        self._abandoned.set()
        with contextlib.suppress(queue.Empty):
            waiting = self._queue.get_nowait()
            if waiting is not None:
                waiting[0].unlink(missing_ok=True)
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)
        self._thread.join(120)


def push_layers(registry: Registry, engine: Engine, image_id: str, repository: str,
                tag: str, level: int, stop: Stop, index: LayerIndex | None = None) -> set[str]:
    """Push the image IMAGE_ID to REPOSITORY:TAG with zstd layers (see the module); the short
    digests (12 hex) of the blobs the registry held already, so that were not sent."""
    what = f"{repository}:{tag}"

    def go_on() -> None:
        if stop.is_set():
            raise BuildFailed(f"pushing {what}: stopped")

    index = index or LayerIndex(level)
    diff_ids = engine.layer_diff_ids(image_id)
    placed: dict[str, Blob] = {}  # layer -> its blob, in the repository now
    kept: set[str] = set()
    # The config is kept in the index by its own digest (the image ID), like a layer.
    for diff in dict.fromkeys([*diff_ids, image_id]):
        go_on()
        blob = index.blob(diff)
        if blob is None:
            continue
        size = registry.blob_size(repository, blob.digest)
        for source in index.repositories(diff) if size is None else []:
            if (size := registry.mount_blob(repository, blob.digest, source)) is not None:
                break
        if size is not None:  # as the registry holds it, whatever the index said
            placed[diff] = Blob(blob.digest, size, blob.raw)
            kept.add(short(blob.digest))
    needed = {d for d in diff_ids if d not in placed}
    if needed or image_id not in placed:
        made, config, found = _from_archive(registry, engine, image_id, repository, needed,
                                            {b.raw for b in placed.values()}, level, stop,
                                            what)
        placed.update(made)
        kept |= found
        if image_id not in placed:
            go_on()
            registry.put_blob(repository, config)
            placed[image_id] = Blob(image_id, len(config), len(config))
    for diff in dict.fromkeys([*diff_ids, image_id]):
        index.record(diff, placed[diff], repository)
    body = json.dumps({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": image_id,
                   "size": placed[image_id].size},
        "layers": [{"mediaType": ZSTD_LAYER, "digest": placed[d].digest,
                    "size": placed[d].size} for d in diff_ids],
    }, separators=(",", ":")).encode()
    go_on()
    registry.put_manifest(repository, tag, body, OCI_MANIFEST)
    # The index is a cache: a lost one costs one compression of each layer, not the push.
    with contextlib.suppress(OSError):
        index.save()
    return kept


def _from_archive(registry: Registry, engine: Engine, image_id: str, repository: str,
                  needed: set[str], passing: set[int], level: int, stop: Stop, what: str
                  ) -> tuple[dict[str, Blob], bytes, set[str]]:
    """Read the engine's archive of the image once: every NEEDED layer compressed and
    uploaded, the config's bytes kept; (the layers' blobs, the config, the short digests of
    the blobs the repository held already). A large member whose size is one of PASSING (the
    sizes of layers the repository holds) is hashed first and compressed only if it turns
    out to be needed; any other is hashed and compressed at once."""
    made: dict[str, Blob] = {}
    small: dict[str, bytes] = {}
    compressor = zstandard.ZstdCompressor(level=level, threads=-1)
    with tempfile.TemporaryDirectory(prefix="imagekit-layers-") as folder:
        uploads = _Uploads(registry, repository, stop, what)
        try:
            with engine.save(image_id, stop) as archive, \
                    tarfile.open(fileobj=archive, mode="r|") as tar:
                for number, member in enumerate(tar):
                    if stop.is_set():
                        raise BuildFailed(f"pushing {what}: stopped")
                    if not member.isfile():
                        continue
                    source = tar.extractfile(member)
                    assert source is not None  # a regular file
                    target = Path(folder) / str(number)
                    if member.size <= SMALL:
                        data = source.read()
                        small[member.name] = data
                        diff = "sha256:" + hashlib.sha256(data).hexdigest()
                        if diff in needed and diff not in made:
                            with io.BytesIO(data) as whole:
                                _, packed = _compress(compressor, whole, target, len(data),
                                                      stop)
                            made[diff] = _queued(uploads, target, packed, len(data))
                        continue
                    if member.size in passing:
                        diff = _spooled(source, target, stop)
                        if diff not in needed or diff in made:
                            target.unlink()
                            continue
                        zst = target.with_suffix(".zst")
                        with target.open("rb") as raw:
                            _, packed = _compress(compressor, raw, zst, member.size, stop)
                        target.unlink()
                        made[diff] = _queued(uploads, zst, packed, member.size)
                        continue
                    diff, packed = _compress(compressor, source, target, member.size, stop)
                    if diff in needed and diff not in made:
                        made[diff] = _queued(uploads, target, packed, member.size)
                    else:
                        target.unlink()
            uploads.finish()
        except (tarfile.TarError, zstandard.ZstdError) as exc:
            uploads.abandon()
            raise BuildFailed(f"pushing {what}: the engine's archive of the image could not "
                              f"be read ({type(exc).__name__}: {str(exc)[:200]})") from None
        except BaseException:
            uploads.abandon()
            raise
    missing = sorted(needed - made.keys())
    if missing:
        raise BuildFailed(f"the engine's archive of {image_id[:19]}… lacks layer "
                          f"{missing[0][:19]}…")
    return made, _config(small, image_id), uploads.kept


class _Hashed:
    """A file written through, its bytes counted and hashed on the way."""

    def __init__(self, out: IO[bytes]) -> None:
        self._out, self._digest, self.size = out, hashlib.sha256(), 0

    def write(self, data: bytes) -> int:
        self._digest.update(data)
        self.size += len(data)
        return self._out.write(data)

    def flush(self) -> None:
        self._out.flush()

    @property
    def digest(self) -> str:
        return "sha256:" + self._digest.hexdigest()


def _queued(uploads: _Uploads, path: Path, packed: _Hashed, raw: int) -> Blob:
    blob = Blob(packed.digest, packed.size, raw)
    uploads.put(path, blob.digest)
    return blob


def _compress(compressor: zstandard.ZstdCompressor, source: IO[bytes], target: Path,
              size: int, stop: Stop) -> tuple[str, _Hashed]:
    """Compress SOURCE (SIZE bytes) into TARGET: (the digest of what was read, the
    compressed file's count and digest)."""
    read = hashlib.sha256()
    with target.open("wb") as out:
        packed = _Hashed(out)
        # zstandard writes to anything with write() and flush().
        with compressor.stream_writer(cast(IO[bytes], packed), size=size,
                                      closefd=False) as writer:
            while chunk := source.read(CHUNK):
                if stop.is_set():
                    raise BuildFailed("pushing: stopped")
                read.update(chunk)
                writer.write(chunk)
    return "sha256:" + read.hexdigest(), packed


def _spooled(source: IO[bytes], target: Path, stop: Stop) -> str:
    read = hashlib.sha256()
    with target.open("wb") as out:
        while chunk := source.read(CHUNK):
            if stop.is_set():
                raise BuildFailed("pushing: stopped")
            read.update(chunk)
            out.write(chunk)
    return "sha256:" + read.hexdigest()


def _config(small: dict[str, bytes], image_id: str) -> bytes:
    """The image's config, as the archive's manifest.json names it, checked against the ID
    the engine gives the image."""
    try:
        listed = json.loads(small["manifest.json"])
        name = str(listed[0]["Config"])
    except (KeyError, IndexError, TypeError, ValueError):
        raise BuildFailed(f"the engine's archive of {image_id[:19]}… has no manifest.json "
                          "naming its config") from None
    config = small.get(name)
    if config is None:
        raise BuildFailed(f"the engine's archive of {image_id[:19]}… has no config {name} "
                          f"of at most {SMALL >> 20} MiB")
    if "sha256:" + hashlib.sha256(config).hexdigest() != image_id:
        raise BuildFailed(f"the engine's archive of {image_id[:19]}… holds another image's "
                          "config (is the engine on the containerd image store? zstd layers "
                          "need Docker's own store or Podman)")
    return config
