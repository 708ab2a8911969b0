"""The catalog's registry: Docker images pushed by the engine, SIFs and the catalog as ORAS
artifacts, and every digest read back from the registry itself.

Images go through the engine's own push (it compresses layers with gzip and skips the ones
the registry already has), or with `layers: {compression: zstd}` through imagekit's
(layers.py). SIFs go the way `apptainer push oras://` stores them, through the ORAS client:
an OCI manifest whose config is `{}` of type `application/vnd.sylabs.sif.config.v1+json` and
whose one layer, of type `application/vnd.sylabs.sif.layer.v1.sif`, is titled with the
file's name.

Credentials come from the Docker config (both the engine and the ORAS client read it) or
from IMAGEKIT_REGISTRY_USERNAME / IMAGEKIT_REGISTRY_PASSWORD; they are never printed.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import hashlib
import json
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import oras.auth
import oras.provider
import requests

from imagekit.engine import temporary
from imagekit.engine.client import Engine, Stop
from imagekit.errors import BuildFailed, ImagekitError, Problem, reason
from imagekit.model import Catalog, arch
from imagekit.publish.layers import push_layers, short
from imagekit.schema import ZSTD_LAYER_LEVELS, Platform
from imagekit.sif import sha256_file

SIF_CONFIG_TYPE = "application/vnd.sylabs.sif.config.v1+json"
SIF_LAYER_TYPE = "application/vnd.sylabs.sif.layer.v1.sif"
CATALOG_CONFIG_TYPE = "application/vnd.imagekit.catalog.config.v1+json"
CATALOG_LAYER_TYPE = "application/vnd.imagekit.catalog.v1+json"
TITLE = "org.opencontainers.image.title"
CREATED = "org.opencontainers.image.created"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
IMAGE_CONFIGS = ("application/vnd.oci.image.config.v1+json",
                 "application/vnd.docker.container.image.v1+json")
UPLOAD_CHUNK = 64 << 20  # a layer goes up in chunks of this size (bytes a retry can resend)
TAG_PAGE = 1000  # tags asked for per page; a registry may hand out fewer, then a next page
EMPTY_TYPE = "application/vnd.oci.empty.v1+json"  # OCI 1.1's config of an artifact
EMPTY_JSON = b"{}"
MANIFEST_TYPES = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
USER_ENV, PASSWORD_ENV = "IMAGEKIT_REGISTRY_USERNAME", "IMAGEKIT_REGISTRY_PASSWORD"


def _tls_failed(host: str, exc: Exception) -> BuildFailed:
    return BuildFailed(f"TLS to {host} failed ({reason(exc)}): give the site CA bundle in a "
                       "site profile's ca_bundle, or name a plain-HTTP registry with "
                       "insecure_registry: true")


def _unreachable(host: str, exc: Exception) -> BuildFailed:
    return BuildFailed(f"registry {host} did not answer: {reason(exc)}")


def _login_hint(host: str) -> str:
    return f"docker login {host}, or set {USER_ENV} and {PASSWORD_ENV}"


class _Client(oras.provider.Registry):  # type: ignore[misc]
    """The ORAS client, failing fast: its own retry waits minutes on a registry that is down,
    and a publish must stop at the first failure and leave everything as it was."""

    def do_request(self, url: str, method: str = "GET", data: Any = None,
                   headers: dict[str, str] | None = None, json: Any = None,
                   stream: bool = False) -> requests.Response:
        undecorated = oras.provider.Registry.do_request.__wrapped__
        basic = getattr(self.auth, "_basic_auth", None)
        if (isinstance(self.auth, oras.auth.BasicAuth) and basic
                and urlsplit(url).netloc == self.hostname):
            # A registry that wants Basic answers every request without it 401, and oras
            # then sends it again: each blob would go up twice. Its own host only.
            headers = {**(headers or {}), **self.auth.get_auth_header()}
        try:
            response: requests.Response = undecorated(self, url, method, data, headers, json,
                                                      stream)
        except requests.exceptions.SSLError as exc:
            raise _tls_failed(self.hostname, exc) from None
        except requests.exceptions.RequestException as exc:
            raise _unreachable(self.hostname, exc) from None
        except (ValueError, oras.auth.AuthenticationException) as exc:
            # oras raises these when it cannot get a token for the credentials it has.
            raise BuildFailed(f"registry {self.hostname} refused the credentials ({exc}): "
                              f"{_login_hint(self.hostname)}") from None
        if response.status_code >= 500:
            raise BuildFailed(f"registry {self.hostname}: {method} answered "
                              f"{response.status_code} {response.reason}")
        return response


@dataclass
class Pushed:
    repository: str
    digest: str  # manifest digest, read back from the registry
    tags: list[str]
    size: int  # config + layers as stored in the registry
    sent: int  # bytes of blobs that were not there before
    seconds: float
    content: str = ""  # an artifact's file digest, as pushed

    @property
    def reference(self) -> str:
        return f"{self.repository}@{self.digest}"


def holds(image_id: str, digest: str, manifest: dict[str, Any]) -> bool:
    """Whether the manifest the registry answered with (its digest, its content) is the image
    an engine names `image_id`. Docker's own image store and Podman name an image by its
    config's digest; containerd's image store (Docker 29's default) by its manifest's own
    digest. Both are digests of content, so neither can match another image."""
    return digest == image_id or (manifest.get("config") or {}).get("digest") == image_id


class _Beside:
    """One piece of work in a thread of its own (a daemon: it never holds the process up), its
    result waited for by the caller. `stop` sets the work's Stop and waits a while for it to
    end."""

    def __init__(self, name: str, work: Callable[[Stop], set[str]]) -> None:
        self._stop = Stop()
        self._done = threading.Event()
        self._value: set[str] = set()
        self._error: BaseException | None = None
        self._work = work
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._value = self._work(self._stop)
        except BaseException as exc:  # handed to the caller, who raises it
            self._error = exc
        finally:
            self._done.set()

    def result(self) -> set[str]:
        self._done.wait()  # Ctrl-C (a signal, handled in this, the main thread) comes through
        error, self._error = self._error, None
        if error is not None:
            raise error
        return self._value

    def stop(self, wait: float = 30) -> bool:
        """Stop the work unless it ended; whether it was still running."""
        if self._done.is_set():
            return False
        self._stop.set()
        self._thread.join(wait)
        return True


class Registry:
    def __init__(self, catalog: Catalog) -> None:
        self.host = catalog.registry
        self.insecure = catalog.insecure_registry
        ca = catalog.site.ca_bundle
        if ca and not Path(ca).is_file():
            owner = next((p.file for p in catalog.site_profiles if p.site.ca_bundle), None)
            raise ImagekitError(Problem(owner, "site.ca_bundle", f"{ca} is not a file"))
        self.verify: bool | str = ca or True
        self.scheme = "http" if self.insecure else "https"
        user, password = os.environ.get(USER_ENV), os.environ.get(PASSWORD_ENV)
        self._credentials = (user, password) if user and password else None
        self._backend = "token"
        self.client = self._client(self._backend)
        self.layer_compression = catalog.layer_compression
        self.layer_level = catalog.layer_level or ZSTD_LAYER_LEVELS[0]

    @property
    def credentials(self) -> tuple[str, str] | None:
        """The environment's registry credentials, for tools that take a Docker config."""
        return self._credentials

    @property
    def engine_auth(self) -> dict[str, str] | None:
        """The same credentials for the engine's push (its registry-auth header)."""
        if self._credentials is None:
            return None
        return {"username": self._credentials[0], "password": self._credentials[1]}

    def _client(self, backend: str) -> _Client:
        client = _Client(hostname=self.host, insecure=self.insecure, tls_verify=self.verify,
                         auth_backend=backend)
        # The Docker config the engine reads too ($DOCKER_CONFIG, else ~/.docker).
        config = Path(os.environ.get("DOCKER_CONFIG", "~/.docker")).expanduser() / "config.json"
        client.auth.load_configs(client.get_container(f"{self.host}/imagekit"),
                                 configs=[str(config)] if config.is_file() else None)
        if self._credentials is not None:
            client.auth.set_basic_auth(*self._credentials)
        return client

    # -- reading ---------------------------------------------------------------------------

    def check(self) -> None:
        """Fail early, before anything is pushed, if the registry cannot be reached; pick the
        auth scheme it asks for (Debian's registry with htpasswd wants Basic, most others a
        Bearer token)."""
        url = f"{self.scheme}://{self.host}/v2/"
        try:
            probe = requests.get(url, timeout=10, verify=self.verify)
        except requests.exceptions.SSLError as exc:
            raise _tls_failed(self.host, exc) from None
        except requests.exceptions.RequestException as exc:
            raise _unreachable(self.host, exc) from None
        if probe.headers.get("WWW-Authenticate", "").lower().startswith("basic"):
            self._backend = "basic"
            self.client = self._client(self._backend)
            # oras' BasicAuth has no credentials until one was found (and then fails with an
            # AttributeError): say what to do instead.
            if not getattr(self.client.auth, "_basic_auth", None):
                raise BuildFailed(f"registry {self.host} asks for credentials and none were "
                                  f"found: {_login_hint(self.host)}")
        response = self.client.do_request(url, "GET")
        if response.status_code == 401:
            raise BuildFailed(f"registry {self.host} refused the credentials "
                              f"({_login_hint(self.host)})")
        if response.status_code != 200:
            raise BuildFailed(f"registry {self.host}: /v2/ answered {response.status_code}; "
                              "is it a Docker/OCI registry?")

    def _path(self, repository: str) -> str:
        prefix = f"{self.host}/"
        if not repository.startswith(prefix):
            raise ImagekitError(f"{repository} is not in registry {self.host}")
        return repository[len(prefix):]

    def _manifest_url(self, repository: str, reference: str) -> str:
        return f"{self.scheme}://{self.host}/v2/{self._path(repository)}/manifests/{reference}"

    def _fetch_manifest(self, repository: str, reference: str) -> requests.Response | None:
        response = self.client.do_request(self._manifest_url(repository, reference), "GET",
                                          headers={"Accept": ", ".join(MANIFEST_TYPES)})
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise BuildFailed(f"registry {self.host}: manifest {repository}:{reference} "
                              f"answered {response.status_code}")
        return response

    def manifest(self, repository: str, reference: str) -> tuple[str, dict[str, Any]] | None:
        """(digest, manifest) of REPOSITORY:TAG or @DIGEST, or None when the registry has none."""
        response = self._fetch_manifest(repository, reference)
        if response is None:
            return None
        digest = response.headers.get("Docker-Content-Digest") or (
            "sha256:" + hashlib.sha256(response.content).hexdigest())
        return digest, response.json()

    def tags(self, repository: str, page: int | None = None) -> list[str]:
        """Every tag of a repository (none when the repository does not exist). Registries
        hand tag lists out in pages (GHCR and GitLab at 100-1000, in alphabetical order, so
        the newest history tags come last): each `Link: <...>; rel="next"` is followed."""
        base = f"{self.scheme}://{self.host}"
        url: str | None = f"{base}/v2/{self._path(repository)}/tags/list?n={page or TAG_PAGE}"
        found: list[str] = []
        while url is not None:
            answer = self.client.do_request(url, "GET")
            if answer.status_code == 404 and not found:
                return []
            if answer.status_code != 200:
                raise BuildFailed(f"registry {self.host}: listing the tags of {repository} "
                                  f"answered {answer.status_code}")
            found += answer.json().get("tags") or []
            following = answer.links.get("next", {}).get("url")
            url = urljoin(f"{base}/", following) if following else None
        return sorted(set(found))

    def delete(self, repository: str, digest: str) -> bool:
        """Delete a manifest (and so every tag naming it); False when it was not there.
        Its blobs go at the registry's next garbage collection."""
        answer = self.client.do_request(self._manifest_url(repository, digest), "DELETE")
        if answer.status_code == 404:
            return False
        if answer.status_code not in (200, 202):
            raise BuildFailed(f"registry {self.host}: deleting {repository}@{digest} answered "
                              f"{answer.status_code} (is deleting enabled in its "
                              "configuration, storage.delete.enabled?)")
        return True

    def blob(self, repository: str, digest: str) -> bytes:
        response = self.client.get_blob(self.client.get_container(repository), digest)
        if response.status_code != 200:
            raise BuildFailed(f"registry {self.host}: blob {digest} of {repository} answered "
                              f"{response.status_code}")
        return bytes(response.content)

    def created(self, repository: str, manifest: dict[str, Any]) -> dt.datetime | None:
        """When what a manifest names was made: an artifact's `created` annotation, an
        image's config `created` (its build); None for an index or an unreadable date."""
        stamp = (manifest.get("annotations") or {}).get(CREATED)
        config = manifest.get("config") or {}
        if stamp is None and config.get("mediaType") in IMAGE_CONFIGS:
            with contextlib.suppress(BuildFailed, ValueError):
                stamp = json.loads(self.blob(repository, str(config.get("digest")))).get(
                    "created")
        try:
            made = dt.datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
        except ValueError:
            return None
        return made if made.tzinfo is not None else made.replace(tzinfo=dt.UTC)

    def has_blob(self, repository: str, digest: str) -> bool:
        return self.blob_size(repository, digest) is not None

    def _read_back(self, repository: str, tag: str) -> tuple[str, dict[str, Any]]:
        found = self.manifest(repository, tag)
        if found is None:
            raise BuildFailed(f"registry {self.host} does not list {repository}:{tag} right "
                              "after it was pushed")
        return found

    # -- Docker images -----------------------------------------------------------------------

    def push_image(self, engine: Engine, image_id: str, repository: str, immutable: str,
                   moving: list[str]) -> Pushed:
        """The engine pushes one tag named for the image ID, and the moving tags follow
        (pushing_image's)."""
        with self.pushing_image(engine, image_id, repository, immutable, moving) as pushed:
            return pushed()

    @contextlib.contextmanager
    def pushing_image(self, engine: Engine, image_id: str, repository: str, immutable: str,
                      moving: list[str], stopped: Callable[[], None] | None = None
                      ) -> Iterator[Callable[[], Pushed]]:
        """The engine pushes one tag named for the image ID (tagged by ID, so a build
        running meanwhile cannot change what it names), or imagekit pushes the image by
        its ID with zstd layers, in a thread of its own, while the caller goes on
        (publish uploads the image's SIF meanwhile, from the disk, while layers are
        compressed and sent). What it yields waits for the push; once the registry's
        manifest is seen to hold that very image, the moving tags are pointed at the
        same manifest through the registry API. A moving tag therefore never reaches the
        registry for any other image. Leaving the block before the push is over (a
        failure, Ctrl-C) stops it (`stopped` is then called, once it ended or was given
        up on); the engine's tag is removed either way."""
        started = time.monotonic()
        diff_ids = engine.layer_diff_ids(image_id)
        ref = f"{repository}:{immutable}"
        # The tag names the image alone: when it is there already (another imagekit pushing
        # the same image on this engine, or a user's pull of it), it is not this push's to
        # remove.
        # zstd layers are imagekit's to push (layers.py), from the image's ID: no tag.
        own = self.layer_compression == "zstd"
        there = None if own else engine.image(ref)
        mine = not own and (there is None or there.id != image_id)
        push: _Beside | None = None
        try:
            if mine:
                # Said to `temporary` first: an interruption that cuts this clean-up short
                # still leaves the tag to the process's last clean-up.
                temporary.tagged(ref)
                engine.tag(image_id, ref)
            if own:
                alone = self.alone()  # the SIF goes up through self.client meanwhile
                running = _Beside(f"push {ref}", lambda stop: push_layers(
                    alone, engine, image_id, repository, immutable, self.layer_level, stop))
            else:
                running = _Beside(f"push {ref}",
                                  lambda stop: engine.push(ref, self.engine_auth, stop))
            push = running
            yield lambda: self._pushed(image_id, repository, immutable, moving, diff_ids,
                                       running.result(), started)
        finally:
            try:
                if push is not None and push.stop() and stopped is not None:
                    stopped()
            finally:
                if mine:
                    engine.untag(ref)
                    temporary.untagged(ref)

    def _pushed(self, image_id: str, repository: str, immutable: str, moving: list[str],
                diff_ids: list[str], kept: set[str], started: float) -> Pushed:
        fetched = self._fetch_manifest(repository, immutable)
        if fetched is None:
            raise BuildFailed(f"registry {self.host} does not list {repository}:{immutable} "
                              "right after it was pushed")
        digest = "sha256:" + hashlib.sha256(fetched.content).hexdigest()
        manifest: dict[str, Any] = fetched.json()
        config = manifest.get("config", {})
        if not holds(image_id, digest, manifest):
            raise BuildFailed(f"{repository}@{digest} holds config {config.get('digest')}, "
                              f"not the tested image {image_id}")
        # The very bytes read back, so every moving tag names the digest just checked.
        self._put_tags(repository, digest, fetched, moving)
        layers = manifest.get("layers", [])
        # A layer is named by its uncompressed (diff) ID or its blob digest, as engines say.
        sent = sum(int(layer["size"]) for layer, diff in zip(layers, diff_ids, strict=False)
                   if not {short(diff), short(str(layer["digest"]))} & kept)
        size = int(config.get("size", 0)) + sum(int(layer["size"]) for layer in layers)
        return Pushed(repository, digest, [*moving, immutable], size, sent,
                      round(time.monotonic() - started, 1))

    def push_index(self, repository: str, members: list[tuple[Platform, str]],
                   tags: list[str]) -> Pushed:
        """One index (an OCI image index, or Docker's manifest list when the members are
        Docker manifests, which Docker 20.10 pulls by platform) of manifests the registry
        holds, one per platform, put under every tag: `docker pull` and `apptainer pull`
        on either architecture then take their own. Nothing but the index is sent."""
        started = time.monotonic()
        entries: list[dict[str, Any]] = []
        for platform, digest in members:
            fetched = self._fetch_manifest(repository, digest)
            if fetched is None:
                raise BuildFailed(f"registry {self.host} does not hold {repository}@{digest}")
            media_type = str(fetched.headers.get("Content-Type")).split(";")[0]
            entry: dict[str, Any] = {
                "mediaType": media_type, "digest": digest, "size": len(fetched.content),
                "platform": {"os": "linux", "architecture": arch(platform)}}
            if arch(platform) == "arm64":
                entry["platform"]["variant"] = "v8"
            entries.append(entry)
        docker = all(e["mediaType"] == DOCKER_MANIFEST for e in entries)
        media_type = DOCKER_LIST if docker else OCI_INDEX
        body = json.dumps({"schemaVersion": 2, "mediaType": media_type, "manifests": entries},
                          separators=(",", ":")).encode()
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        self.put_manifest(repository, digest, body, media_type)
        self.retag(repository, digest, tags)
        return Pushed(repository, digest, tags, len(body), len(body),
                      round(time.monotonic() - started, 1))

    def retag(self, repository: str, digest: str, tags: list[str]) -> None:
        """Point tags at a manifest the registry holds, through the registry API alone: no
        blob is sent, nothing is pulled."""
        fetched = self._fetch_manifest(repository, digest)
        if fetched is None:
            raise BuildFailed(f"registry {self.host} does not hold {repository}@{digest}")
        if "sha256:" + hashlib.sha256(fetched.content).hexdigest() != digest:
            raise BuildFailed(f"{repository}@{digest}: the manifest does not match its digest")
        self._put_tags(repository, digest, fetched, tags)

    def _put_tags(self, repository: str, digest: str, fetched: requests.Response,
                  tags: list[str]) -> None:
        headers = {"Content-Type": str(fetched.headers.get("Content-Type"))}
        for tag in tags:
            answer = self.client.do_request(self._manifest_url(repository, tag), "PUT",
                                            data=fetched.content, headers=headers)
            if answer.status_code not in (200, 201):
                raise BuildFailed(f"registry {self.host}: tagging {repository}:{tag} answered "
                                  f"{answer.status_code}")
            if self._read_back(repository, tag)[0] != digest:
                raise BuildFailed(f"{repository}:{tag} does not point at {digest} after the push")

    # -- ORAS artifacts (SIFs, the catalog) -------------------------------------------------------

    def push_artifact(self, repository: str, tags: list[str], path: Path, layer_type: str,
                      config_type: str, created: str,
                      annotations: dict[str, str] | None = None) -> Pushed:
        """Push one file as an ORAS artifact under every tag, its manifest annotated with
        `created` and ANNOTATIONS; blobs and manifests the registry already holds are not
        sent again."""
        annotations = {**(annotations or {}), CREATED: created}
        started = time.monotonic()
        sha = "sha256:" + sha256_file(path)
        size = path.stat().st_size
        sent = 0 if self.has_blob(repository, sha) else size
        with tempfile.TemporaryDirectory(prefix="imagekit-oras-") as tmp:
            config = Path(tmp) / "config.json"
            config.write_text("{}")  # what apptainer writes; pull ignores it
            digests = []
            for tag in tags:
                existing = self.manifest(repository, tag)
                if existing is not None and _is_artifact(existing[1], sha, path.name,
                                                         layer_type, config_type, annotations):
                    digests.append(existing[0])  # already there: read back just now
                    continue
                try:
                    self.client.push(
                        target=f"{repository}:{tag}",
                        files=[f"{path}:{layer_type}"],
                        manifest_config=f"{config}:{config_type}",
                        manifest_annotations=annotations,
                        disable_path_validation=True,
                        quiet=True,
                    )
                except ValueError as exc:  # oras: a 4xx answer to an upload
                    raise BuildFailed(f"pushing {path.name} to {repository}:{tag} failed: "
                                      f"{str(exc)[:300]}") from None
                pushed, manifest = self._read_back(repository, tag)
                if not _is_artifact(manifest, sha, path.name, layer_type, config_type,
                                    annotations):
                    raise BuildFailed(f"{repository}:{tag} does not hold {path.name} after "
                                      "the push")
                digests.append(pushed)
        digest = digests[0]
        for tag, other in zip(tags, digests, strict=True):
            if other != digest:
                raise BuildFailed(f"{repository}:{tag} does not point at {digest} after the push")
        return Pushed(repository, digest, tags, size, sent, round(time.monotonic() - started, 1),
                      content=sha)

    # -- referrers (an SBOM that refers to its image) ---------------------------------------------

    def put_blob(self, repository: str, data: bytes) -> tuple[str, int]:
        """Upload one blob unless the registry has it: (its digest, bytes sent)."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if self.has_blob(repository, digest):
            return digest, 0
        location = self._start_upload(repository)
        joiner = "&" if "?" in location else "?"
        done = self.client.do_request(f"{location}{joiner}digest={digest}", "PUT", data=data,
                                      headers={"Content-Type": "application/octet-stream"})
        if done.status_code != 201:
            raise BuildFailed(f"registry {self.host}: uploading a blob to {repository} "
                              f"answered {done.status_code}")
        return digest, len(data)

    def _uploads_url(self, repository: str) -> str:
        return f"{self.scheme}://{self.host}/v2/{self._path(repository)}/blobs/uploads/"

    def _start_upload(self, repository: str) -> str:
        started = self.client.do_request(self._uploads_url(repository), "POST")
        if started.status_code != 202:
            raise BuildFailed(f"registry {self.host}: starting an upload to {repository} "
                              f"answered {started.status_code}")
        return self._location(started, repository)

    def _location(self, answer: requests.Response, repository: str) -> str:
        """Where an upload goes on: the registry's own host only (the client would send it
        the credentials too)."""
        location = answer.headers.get("Location", "")
        if location.startswith("/"):
            location = f"{self.scheme}://{self.host}{location}"
        if not location.startswith(f"{self.scheme}://{self.host}/"):
            raise BuildFailed(f"registry {self.host}: an upload to {repository} was sent on to "
                              f"{location.split('?')[0][:100] or 'nowhere'}, not followed")
        return location

    def alone(self) -> Registry:
        """The same registry through a client of its own, for a push in another thread (a
        client holds one token, scoped to one repository at a time)."""
        other = copy.copy(self)
        other.client = self._client(self._backend)
        return other

    def blob_size(self, repository: str, digest: str) -> int | None:
        """The size of a blob the repository holds; None when it does not hold it."""
        response = self.client.get_blob(self.client.get_container(repository), digest,
                                        head=True)
        if response.status_code != 200:
            return None
        return int(response.headers.get("Content-Length", 0))

    def mount_blob(self, repository: str, digest: str, source: str) -> int | None:
        """Link a blob the registry holds in another repository (SOURCE) into REPOSITORY,
        nothing sent: its size as the registry now holds it, or None when the registry did
        not (the source lost it, or the credentials cannot read it)."""
        if not source.startswith(f"{self.host}/") or source == repository:
            return None
        answer = self.client.do_request(
            f"{self._uploads_url(repository)}?mount={digest}&from={self._path(source)}", "POST")
        if answer.status_code == 201:
            return self.blob_size(repository, digest)
        if answer.status_code == 202:  # an upload it opened instead: given up
            with contextlib.suppress(BuildFailed):
                self.client.do_request(self._location(answer, repository), "DELETE")
        return None

    def put_blob_file(self, repository: str, path: Path, digest: str,
                      halted: Callable[[], bool] = lambda: False) -> None:
        """Upload a file as one blob of a digest the caller computed (the registry checks
        it), in chunks: each is bytes that a retry can send again (after a 401), and
        `halted` is asked before each."""
        location = self._start_upload(repository)
        sent = 0
        with path.open("rb") as data:
            while chunk := data.read(UPLOAD_CHUNK):
                if halted():
                    raise BuildFailed(f"pushing {digest[:19]}… to {repository}: stopped")
                answer = self.client.do_request(location, "PATCH", data=chunk, headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Range": f"{sent}-{sent + len(chunk) - 1}"})
                if answer.status_code != 202:
                    raise BuildFailed(f"registry {self.host}: uploading {digest[:19]}… to "
                                      f"{repository} answered {answer.status_code}")
                sent += len(chunk)
                location = self._location(answer, repository)
        joiner = "&" if "?" in location else "?"
        done = self.client.do_request(f"{location}{joiner}digest={digest}", "PUT", data=b"",
                                      headers={"Content-Type": "application/octet-stream"})
        if done.status_code != 201:
            raise BuildFailed(f"registry {self.host}: uploading {digest[:19]}… to {repository} "
                              f"answered {done.status_code}")

    def put_manifest(self, repository: str, reference: str, body: bytes,
                     media_type: str) -> None:
        answer = self.client.do_request(self._manifest_url(repository, reference), "PUT",
                                        data=body, headers={"Content-Type": media_type})
        if answer.status_code not in (200, 201):
            raise BuildFailed(f"registry {self.host}: manifest {repository}:{reference} "
                              f"answered {answer.status_code}: {answer.text[:200]}")

    def push_referrer(self, repository: str, subject_digest: str, data: bytes,
                      artifact_type: str, title: str, created: str) -> Pushed:
        """Push DATA as an OCI 1.1 artifact whose `subject` is the manifest SUBJECT_DIGEST,
        and list it where clients look for what refers to that manifest: the registry's
        referrers API when it has one, else the referrers tag `sha256-<hex>` (the OCI
        distribution spec's fallback, which Debian's registry 2.8 needs)."""
        started = time.monotonic()
        fetched = self._fetch_manifest(repository, subject_digest)
        if fetched is None:
            raise BuildFailed(f"registry {self.host} does not hold {repository}@"
                              f"{subject_digest}")
        subject = {"mediaType": str(fetched.headers.get("Content-Type")).split(";")[0],
                   "digest": subject_digest, "size": len(fetched.content)}
        config_digest, sent = self.put_blob(repository, EMPTY_JSON)
        layer_digest, sent_layer = self.put_blob(repository, data)
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": artifact_type,
            "config": {"mediaType": EMPTY_TYPE, "digest": config_digest,
                       "size": len(EMPTY_JSON)},
            "layers": [{"mediaType": artifact_type, "digest": layer_digest,
                        "size": len(data), "annotations": {TITLE: title}}],
            "subject": subject,
            "annotations": {CREATED: created},
        }
        body = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        self.put_manifest(repository, digest, body, OCI_MANIFEST)
        descriptor = {"mediaType": OCI_MANIFEST, "digest": digest, "size": len(body),
                      "artifactType": artifact_type, "annotations": {CREATED: created}}
        if digest not in {d["digest"] for d in self.referrers(repository, subject_digest)}:
            tag = referrers_tag(subject_digest)
            current = self.manifest(repository, tag)
            listed = [d for d in (current[1].get("manifests", []) if current else [])
                      if d.get("digest") != digest]
            index = {"schemaVersion": 2, "mediaType": OCI_INDEX,
                     "manifests": [*listed, descriptor]}
            self.put_manifest(repository, tag,
                              json.dumps(index, sort_keys=True,
                                         separators=(",", ":")).encode(), OCI_INDEX)
        return Pushed(repository, digest, [], len(data), sent + sent_layer,
                      round(time.monotonic() - started, 1),
                      content=layer_digest)

    def referrers(self, repository: str, subject_digest: str) -> list[dict[str, Any]]:
        """Descriptors of the artifacts that refer to a manifest: from the referrers API,
        or from the referrers tag where the registry has no such API."""
        url = (f"{self.scheme}://{self.host}/v2/{self._path(repository)}/referrers/"
               f"{subject_digest}")
        answer = self.client.do_request(url, "GET", headers={"Accept": OCI_INDEX})
        if answer.status_code == 200 and answer.headers.get(
                "Content-Type", "").startswith(OCI_INDEX):
            found: list[dict[str, Any]] = answer.json().get("manifests", [])
            return found
        current = self.manifest(repository, referrers_tag(subject_digest))
        return list(current[1].get("manifests", [])) if current else []

    def pull_artifact(self, repository: str, tag: str, layer_type: str) -> bytes | None:
        found = self.artifact(repository, tag, layer_type)
        return None if found is None else found[0]

    def artifact(self, repository: str, tag: str,
                 layer_type: str) -> tuple[bytes, dict[str, str]] | None:
        """An artifact's one file and its manifest's annotations, read from one manifest."""
        found = self.manifest(repository, tag)
        if found is None:
            return None
        layers = [lay for lay in found[1].get("layers", []) if lay.get("mediaType") == layer_type]
        if len(layers) != 1:
            raise BuildFailed(f"{repository}:{tag} is not an imagekit artifact")
        data = self.blob(repository, layers[0]["digest"])
        if "sha256:" + hashlib.sha256(data).hexdigest() != layers[0]["digest"]:
            raise BuildFailed(f"{repository}:{tag}: the blob does not match its digest")
        return data, dict(found[1].get("annotations") or {})


def referrers_tag(digest: str) -> str:
    """The OCI referrers tag schema: `<alg>-<hex>`, cut to a tag's 128 characters."""
    algorithm, _, hex_ = digest.partition(":")
    return f"{algorithm}-{hex_}"[:128]


def _is_artifact(manifest: dict[str, Any], sha: str, title: str, layer_type: str,
                 config_type: str, annotations: dict[str, str]) -> bool:
    layers = manifest.get("layers", [])
    return (
        manifest.get("config", {}).get("mediaType") == config_type
        and len(layers) == 1
        and layers[0].get("digest") == sha
        and layers[0].get("mediaType") == layer_type
        and (layers[0].get("annotations") or {}).get(TITLE) == title
        and all((manifest.get("annotations") or {}).get(key) == value
                for key, value in annotations.items())
    )
