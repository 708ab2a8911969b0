"""Given credentials in every URL setting of the site, when I render, build and convert,
then the tools that need them get them, and no recipe, layer, image config, SIF, log line
or command line holds them."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import secrets
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from tests.integration import background, suite
from tests.integration.conftest import imagekit, main_base
from tests.integration.mirror import Mirror, make_ca
from tests.integration.runners import own_engine

pytestmark = pytest.mark.integration

CANARY = """\
description: A stack that gets something from every package source of the site.
extends: base
apt: [nodejs, npm]
pip: [six]
npm: [is-number@7.0.0]
checks:
  imports: [six]
  commands:
    - {run: "ls /usr/local/lib/node_modules", expect: is-number}
"""


def _gateway(client: Any) -> str:
    """The host as build containers reach it."""
    config = client.networks.get("bridge").attrs["IPAM"]["Config"][0]
    # dockerd leaves Gateway out when it is the default: the subnet's first address.
    return str(config.get("Gateway") or next(ipaddress.ip_network(config["Subnet"]).hosts()))


@contextlib.contextmanager
def _site(tmp_path: Path, client: Any) -> Iterator[tuple[Path, Mirror]]:
    """A site whose every package source (a mirror of the suite's own) asks for a
    password, in every URL setting of the catalog's profiles."""
    host = _gateway(client)
    (tmp_path / "ca").mkdir()
    ca, tls = make_ca(tmp_path / "ca", host)
    mirror = Mirror("canary-user", "Canary-" + secrets.token_hex(12), tls=tls).start()
    userinfo = f"{mirror.username}:{mirror.password}"
    # apt speaks plain HTTP to its mirror (it checks signatures), pip and npm use TLS.
    url = f"http://{userinfo}@{host}:{mirror.port}"
    tls_url = f"https://{userinfo}@{host}:{mirror.tls_port}"
    catalog = suite.copy_project(tmp_path, "canary", quick_sifs=True)
    bundle = tmp_path / "site-ca.crt"
    bundle.write_bytes(Path("/etc/ssl/certs/ca-certificates.crt").read_bytes() + ca.read_bytes())
    site_ca = tmp_path / "profiles/site-ca.yaml"
    site_ca.write_text(site_ca.read_text().replace("/etc/ssl/certs/ca-certificates.crt",
                                                   str(bundle)))
    catalog.write_text(catalog.read_text()
                       .replace("  - stack: pyspark\n", "  - stack: pyspark\n"
                                "  - stack: canary\n    formats: [docker, sif]\n"))
    (tmp_path / "stacks/canary.yaml").write_text(CANARY)
    mirrors = tmp_path / "profiles/mirrors.yaml"
    mirrors.write_text(mirrors.read_text() + (
        f"  apt_mirror: {url}/debian\n"
        f"  pip_index_url: {tls_url}/pypi/simple\n"
        f"  pip_extra_index_url: {tls_url}/pypi/simple\n"
        f"  npm_registry: {tls_url}/npm/\n"
        f"  proxy: {{http: '{url}', https: '{url}', no_proxy: 'localhost,127.0.0.1,{host}'}}\n"
    ))
    try:
        yield catalog, mirror
    finally:
        mirror.stop()
        for ref in ("canary", "base"):
            for image in client.images.list(suite.repository(ref, "canary")):
                client.images.remove(image.id, force=True)


@pytest.fixture
def site(tmp_path: Path, client: Any) -> Iterator[tuple[Path, Mirror]]:
    with _site(tmp_path, client) as found:
        yield found


class CommandLines:
    """Every command line on the machine, sampled while a step runs: what `ps -eo args`
    shows, read where ps reads it (/proc/PID/cmdline), without starting a process for each
    look (a ps every 50 ms forked the pytest process 20 times a second)."""

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        try:
            while not self._stop.is_set():
                for pid in os.listdir("/proc"):
                    if not pid.isdigit():
                        continue
                    # OSError: the process has ended since the listing.
                    with contextlib.suppress(OSError), open(f"/proc/{pid}/cmdline", "rb") as f:
                        self.seen.add(f.read().replace(b"\0", b" ")
                                      .decode(errors="replace").strip())
                time.sleep(0.05)
        except BaseException as exc:  # a sampler that stops must fail the test, not thin it
            self.error = exc

    def __enter__(self) -> CommandLines:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        if self.error is not None:
            raise AssertionError("command lines were not sampled to the end") from self.error


def beside(folder: Path) -> None:
    """The whole of the first test below, beside the rest of the suite (tests/integration/
    background.py), on a Docker engine of its own that gets the suite's base (under Podman,
    the suite's engine: it has no daemon, so its builds are this setup's own processes): a
    full build of base and canary through the site's mirror while every command line on the
    machine is sampled. Its assertions are the test's: one that fails here fails that test,
    with its message."""
    for part in ("site", "tmp"):
        (folder / part).mkdir()
    engine = own_engine("canary", folder / "engine", 44)
    if engine is None:
        main_base()  # made in the suite's own engine, which the build uses
    client = engine.client if engine else docker.from_env(timeout=900)
    try:
        with _site(folder / "site", client) as site:
            _no_credential_leaves_the_processes_that_need_it(
                site, client, folder / "tmp", engine.env if engine else {})
    finally:
        if engine is not None:
            engine.stop()
        else:
            client.close()


def test_no_credential_leaves_the_processes_that_need_it() -> None:
    try:
        background.result(__name__)
    finally:
        background.finish(__name__)


def _no_credential_leaves_the_processes_that_need_it(site: tuple[Path, Mirror], client: Any,
                                                      tmp_path: Path,
                                                      env: dict[str, str]) -> None:
    catalog, mirror = site
    password = mirror.password
    work = catalog.parent

    # Locks resolve through the site's own index (the mirror): the site changed, so do they.
    with CommandLines() as ps:
        locked = imagekit("lock", "base", "canary", catalog=catalog, check=False, env=env)
    assert locked.returncode == 0, locked.stdout + locked.stderr
    assert "pypi" in mirror.kinds(authorized=True)
    assert password not in locked.stdout + locked.stderr
    assert not [line for line in ps.seen if password in line]
    for name in ("base", "canary"):
        text = (work / f"stacks/{name}.lock").read_text()
        assert "six==" in text or name == "base"
        assert password not in text and mirror.username not in text
    mirror.hits.clear()  # what follows is the build's

    # (The other stacks keep their locks, stale for this site: only these two are built.)
    shown = imagekit("render", "base", "canary", catalog=catalog, env=env)
    recipes = b"".join(p.read_bytes() for p in (work / "recipes").rglob("*") if p.is_file())
    assert b"/npm/" in recipes and b"/debian" in recipes  # the public URLs are rendered
    assert password.encode() not in recipes

    with CommandLines() as ps:
        built = imagekit("build", "canary", "--plain", "--force", "--sif-method", "native",
                         catalog=catalog, check=False, env=env)
    output = built.stdout + built.stderr
    assert built.returncode == 0, output[-4000:]
    # The credentials reached every tool that needed them: each source saw them, and none
    # was asked for without them and then granted.
    assert {"pypi", "npm", "debian", "connect"} <= mirror.kinds(authorized=True), mirror.hits
    assert password not in output + shown.stdout + shown.stderr
    assert not [line for line in ps.seen if password in line]
    assert ps.seen, "ps was sampled"

    for name in ("base", "canary"):
        image = client.images.get(suite.ref(name, "canary"))
        assert password not in json.dumps(image.attrs) + json.dumps(image.history())
        assert password.encode() not in b"".join(image.save(named=False)), name

    sif = work / "dist" / "canary_latest.sif"
    assert password.encode() not in sif.read_bytes()  # the embedded definition, labels
    root = tmp_path / "sif-root"
    subprocess.run(["unsquashfs", "-no-xattrs", "-d", str(root), "-o",
                    str(_squashfs_offset(sif)), str(sif)], check=True, capture_output=True)
    grep = subprocess.run(["grep", "-rla", password, str(root)], capture_output=True, text=True)
    assert grep.stdout == "", grep.stdout
    assert (root / "usr/local/lib/node_modules/is-number").is_dir()

    shown = imagekit("show", "canary", catalog=catalog, env=env)
    assert password not in shown.stdout


@pytest.mark.docker_engine  # the classic builder is Docker's
def test_the_classic_builder_refuses_credentials_it_cannot_keep_out(
        site: tuple[Path, Mirror]) -> None:
    catalog, mirror = site
    imagekit("lock", "base", "canary", catalog=catalog)  # the site's sources changed
    result = imagekit("build", "canary", "--builder", "classic", "--plain", catalog=catalog,
                      check=False)
    assert result.returncode == 2
    assert "--builder buildkit" in result.stderr + result.stdout
    assert mirror.password not in result.stdout + result.stderr


def _squashfs_offset(sif: Path) -> int:
    listing = subprocess.run(["siftool", "list", str(sif)], capture_output=True, text=True,
                             check=True).stdout
    for line in listing.splitlines():
        if "FS" in line and "Squashfs" in line:
            # ID |GROUP |LINK |SIF POSITION (start-end) |TYPE
            start = line.split("|")[3].strip().split("-")[0]
            return int(start)
    raise AssertionError(f"no squashfs partition in {listing}")
