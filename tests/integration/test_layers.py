"""Given `layers: {compression: zstd}`, when I publish tested images, then the registry holds
each as an OCI manifest of the tested config with zstd layers that decompress to the image's
own layers; a layer is compressed once; and the engines users run pull it on hosts that have
never seen it (Podman, Docker 28), while Docker 20.10 refuses it, as the catalog says."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import zstandard

from imagekit.engine.choice import connect
from imagekit.engine.client import Stop
from imagekit.errors import BuildFailed
from imagekit.publish.layers import ZSTD_LAYER, LayerIndex, push_layers
from imagekit.publish.registry import Registry
from imagekit.published.catalog import PublishedImage, read
from imagekit.resolve import load_catalog
from tests.integration import engines, suite
from tests.integration.conftest import failed, imagekit
from tests.integration.registry import LocalRegistry, fresh_registry
from tests.integration.runners import Runner

pytestmark = pytest.mark.integration

NS = suite.NAMESPACE
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    yield from fresh_registry(tmp_path_factory.mktemp("registry"))


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, registry: LocalRegistry,
         build: Callable[..., list[dict[str, Any]]],
         smoke: Callable[[str], dict[str, Any]]) -> Path:
    """The suite's catalog with zstd layers, in a folder of its own: its base and scipy are
    the session's, built and tested (their test records copied in), Docker images only."""
    build("scipy")
    for name in ("base", "scipy"):
        report = smoke(name)
        assert report["exit"] == 0, failed(report)
    folder = tmp_path_factory.mktemp("zstd-site")
    catalog = suite.copy_project(folder)
    # Docker images only: SIFs are not layers (and the session's scipy has none).
    text = catalog.read_text().replace("  - stack: scipy\n    formats: [docker, sif]\n",
                                       "  - stack: scipy\n")
    assert "  - stack: scipy\n  - name: scipy-hpc" in text
    catalog.write_text(text + "layers: {compression: zstd}\n")
    shutil.copytree(suite.DIST / "tested", folder / "dist" / "tested")
    return catalog


_SENT: dict[str, int] = {}  # bytes publish said it sent, per image


@pytest.fixture(scope="module")
def published(site: Path, tmp_path_factory: pytest.TempPathFactory
              ) -> dict[str, PublishedImage]:
    """base and scipy published once, with a layer index of the module's own (the user's
    cache, empty: every layer is compressed)."""
    cache = tmp_path_factory.mktemp("cache")
    result = imagekit("publish", "base", "scipy", "--json", catalog=site,
                      env={"XDG_CACHE_HOME": str(cache)})
    outcome = json.loads(result.stdout)
    assert [i["image"] for i in outcome["images"]] == ["base", "scipy"], result.stdout
    _SENT.update({i["image"]: int(i["sent"]) for i in outcome["images"]})
    catalog = read(site.parent / "dist" / "catalog.json")
    return {i.name: i for i in catalog.images if i.name in ("base", "scipy")}


def test_the_registry_holds_the_tested_config_and_zstd_layers_that_are_its_layers(
        registry: LocalRegistry, site: Path, published: dict[str, PublishedImage]) -> None:
    engine = connect(load_catalog(site), os.environ.get("IMAGEKIT_ENGINE"))
    for name, entry in published.items():
        digest, manifest = registry.manifest(f"{NS}/{name}", entry.digest)
        assert digest == entry.digest
        assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
        assert manifest["config"]["digest"] == entry.image_id  # the tested image
        assert {layer["mediaType"] for layer in manifest["layers"]} == {ZSTD_LAYER}
        unpacked = []
        for layer in manifest["layers"]:
            blob = registry.get(f"{NS}/{name}/blobs/{layer['digest']}")
            assert blob.status_code == 200
            assert blob.content[:4] == ZSTD_MAGIC
            assert "sha256:" + hashlib.sha256(blob.content).hexdigest() == layer["digest"]
            raw = zstandard.ZstdDecompressor().decompressobj().decompress(blob.content)
            unpacked.append("sha256:" + hashlib.sha256(raw).hexdigest())
        assert unpacked == engine.layer_diff_ids(entry.image_id), name
        # Its tags, and the referrers' tag (the SBOM, provenance and test record).
        assert len(entry.tags) > 1 and registry.tags(f"{NS}/{name}") == sorted(
            [*entry.tags, entry.digest.replace(":", "-")])


def test_a_childs_push_sends_only_its_own_layers(registry: LocalRegistry,
                                                 published: dict[str, PublishedImage]
                                                 ) -> None:
    """scipy's push mounts base's layers from base's repository: compressed once."""
    _, base = registry.manifest(f"{NS}/base", published["base"].digest)
    _, scipy = registry.manifest(f"{NS}/scipy", published["scipy"].digest)
    shared = [layer["digest"] for layer in base["layers"]]
    assert [layer["digest"] for layer in scipy["layers"]][:len(shared)] == shared
    assert _SENT["base"] == sum(int(layer["size"]) for layer in base["layers"])
    assert _SENT["scipy"] == sum(int(layer["size"]) for layer in scipy["layers"]
                                 if layer["digest"] not in shared) > 0


def test_a_layer_is_compressed_once_and_always_to_the_same_blob(
        registry: LocalRegistry, site: Path, published: dict[str, PublishedImage],
        tmp_path: Path) -> None:
    catalog = load_catalog(site)
    engine = connect(catalog, os.environ.get("IMAGEKIT_ENGINE"))
    image_id = published["scipy"].image_id
    # Another repository, with an index of its own (empty): every layer is read and
    # compressed again, and the manifest is the very one publish pushed.
    index = LayerIndex(3, tmp_path / "index")
    kept = push_layers(Registry(catalog), engine, image_id, f"{suite.ADDRESS}/{NS}/again",
                       "first", 3, Stop(), index)
    digest, _ = registry.manifest(f"{NS}/again", "first")
    assert digest == published["scipy"].digest
    assert kept == set()  # a repository of its own: nothing was there
    # The same index, a third repository: every blob, the config's too, is mounted from
    # where it was pushed; nothing is sent.
    kept = push_layers(Registry(catalog), engine, image_id, f"{suite.ADDRESS}/{NS}/third",
                       "second", 3, Stop(), LayerIndex(3, tmp_path / "index"))
    _, manifest = registry.manifest(f"{NS}/third", "second")
    assert kept == {layer["digest"].removeprefix("sha256:")[:12]
                    for layer in [*manifest["layers"], manifest["config"]]}
    assert registry.manifest(f"{NS}/third", "second")[0] == published["scipy"].digest


def test_a_stopped_push_puts_no_manifest_and_leaves_no_file(
        registry: LocalRegistry, site: Path, published: dict[str, PublishedImage],
        tmp_path: Path) -> None:
    catalog = load_catalog(site)
    stop = Stop()
    errors: list[BaseException] = []
    before = set(Path("/tmp").glob("imagekit-layers-*"))

    def push() -> None:
        try:
            push_layers(Registry(catalog), connect(catalog, os.environ.get("IMAGEKIT_ENGINE")),
                        published["scipy"].image_id,
                        f"{suite.ADDRESS}/{NS}/stopped", "never", 3, stop,
                        LayerIndex(3, tmp_path / "index"))
        except BaseException as exc:
            errors.append(exc)

    pushing = threading.Thread(target=push)
    pushing.start()
    deadline = time.monotonic() + 60
    # Stopped once the registry's storage shows the first blob coming in: the archive is
    # being read, compressed and sent.
    storage = registry.folder / "data/docker/registry/v2/repositories" / NS / "stopped"
    while not storage.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    stop.set()
    pushing.join(60)
    assert not pushing.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], BuildFailed), errors
    assert "stopped" in str(errors[0])
    assert registry.tags(f"{NS}/stopped") == []
    assert set(Path("/tmp").glob("imagekit-layers-*")) == before


def test_podman_pulls_it_on_an_empty_store_and_runs_the_tested_image(
        published: dict[str, PublishedImage]) -> None:
    # A store of its own, empty; Podman wants a run root of at most 50 characters.
    folder = Path(tempfile.mkdtemp(prefix="ik-zstd-"))
    store = ["podman", "--root", str(folder / "root"), "--runroot", str(folder / "run")]
    reference = published["scipy"].reference
    try:
        pulled = subprocess.run([*store, "pull", "-q", "--tls-verify=false", reference],
                                capture_output=True, text=True, timeout=600)
        assert pulled.returncode == 0, pulled.stderr
        assert "sha256:" + pulled.stdout.strip() == published["scipy"].image_id
        ran = subprocess.run([*store, "run", "--rm", "--network", "none", reference,
                              "python3", "-c", "import scipy; print(scipy.__version__)"],
                             capture_output=True, text=True, timeout=300)
        assert ran.returncode == 0 and ran.stdout.strip(), ran.stderr
    finally:
        subprocess.run([*store, "rmi", "-af"], capture_output=True, timeout=300)
        subprocess.run(["umount", "-R", str(folder / "root")], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


def test_docker_28_pulls_it_on_an_empty_engine_and_runs_the_tested_image(
        published: dict[str, PublishedImage], tmp_path: Path) -> None:
    root = engines.ensure_root()
    engine = engines.SidEngine("zst", "docker", 50, False, root)
    with engines.running(engine, tmp_path / "host"):
        assert engine.client.images.list() == []
        entry = published["scipy"]
        image = engine.client.images.pull(entry.reference)
        assert image.id == entry.image_id
        said = engine.client.containers.run(entry.reference, ["python3", "-c",
                                                              "import scipy; print('ok')"],
                                            network_mode="none", remove=True)
        assert said.strip() == b"ok"


def test_docker_20_10_refuses_it_as_the_catalog_says(
        published: dict[str, PublishedImage]) -> None:
    # A folder of a short name: containerd's socket path is held to 108 characters.
    engine = Runner("zst", Path(tempfile.mkdtemp(prefix="ik-zstd-")), 47)
    try:
        engine.start()
        assert engine.client.version()["Version"].startswith("20.10")
        pulled = subprocess.run(["docker", "pull", published["base"].reference],
                                env={"PATH": "/usr/bin:/bin", **engine.env},
                                capture_output=True, text=True, timeout=600)
        assert pulled.returncode != 0
        # It downloads the layers and reads them as plain tar: what its users see.
        assert "failed to register layer" in pulled.stderr, pulled.stderr
        assert "invalid tar header" in pulled.stderr, pulled.stderr
        assert engine.client.images.list() == []
    finally:
        engine.stop()


CANARY = "zstd-layers-canary-secret"


def test_a_registry_that_asks_for_credentials_takes_it_and_sees_them_never_shown(
        registry: LocalRegistry, site: Path, published: dict[str, PublishedImage],
        tmp_path: Path) -> None:
    """Debian's registry with htpasswd answers 401 to every request sent without the
    credentials: imagekit sends them from the first try, so no chunk of a layer goes up
    twice. Last in the module: its registry is emptied for it."""
    import bcrypt

    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text(f"publisher:{bcrypt.hashpw(CANARY.encode(), bcrypt.gensalt()).decode()}\n")
    registry.stop()
    shutil.rmtree(registry.folder / "data", ignore_errors=True)
    registry.htpasswd, registry.auth = htpasswd, ("publisher", CANARY)
    registry.start()
    try:
        result = imagekit("publish", "base", "--json", catalog=site, env={
            "IMAGEKIT_REGISTRY_USERNAME": "publisher", "IMAGEKIT_REGISTRY_PASSWORD": CANARY,
            "XDG_CACHE_HOME": str(tmp_path / "cache"), "DOCKER_CONFIG": str(tmp_path)})
        (line,) = json.loads(result.stdout)["images"]
        digest, manifest = registry.manifest(f"{NS}/base", published["base"].digest)
        # The very manifest of the first registry, every layer sent again.
        assert digest == published["base"].digest
        assert int(line["sent"]) == sum(int(layer["size"]) for layer in manifest["layers"])
        assert CANARY not in result.stdout + result.stderr
        # The registry's access log: only the probe that learns the scheme goes without.
        refused = [line for line in (registry.folder / "registry.log").read_text().splitlines()
                   if '" 401 ' in line and "python-requests" in line]
        assert refused and all('"GET /v2/ HTTP' in line for line in refused), refused[:5]
    finally:
        registry.stop()
        registry.htpasswd, registry.auth = None, None
        registry.start()
