"""The suite's registry: Debian's docker-registry on the suite's own loopback address
(tests/integration/suite.py; never the catalog's 127.0.0.1:5055, where `make demo` leaves
its registry running), started through the same scripts/registry.sh that `make demo` uses,
with data in a folder of its own, so that every use starts from an empty registry."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from tests.integration.suite import ADDRESS, ROOT


def answers(address: str = ADDRESS) -> bool:
    for scheme in ("http", "https"):
        try:
            code = requests.get(f"{scheme}://{address}/v2/", timeout=2, verify=False).status_code
        except requests.RequestException:
            continue
        if code in (200, 401):
            return True
    return False


def make_ca(folder: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1 signed by it."""
    ca, ca_key = folder / "ca.crt", folder / "ca.key"
    cert, key, csr, ext = (folder / n for n in ("server.crt", "server.key", "server.csr",
                                                 "ext.cnf"))
    ext.write_text("subjectAltName=IP:127.0.0.1\n")
    for argv in (
        ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca,
         "-days", "2", "-subj", "/CN=imagekit test site CA"],
        ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj",
         "/CN=127.0.0.1"],
        ["x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out",
         cert, "-days", "2", "-extfile", ext],
    ):
        subprocess.run(["openssl", *map(str, argv)], check=True, capture_output=True)
    return ca, cert, key


@dataclass
class LocalRegistry:
    folder: Path
    htpasswd: Path | None = None  # set: the registry asks for credentials
    auth: tuple[str, str] | None = None  # what the tests themselves send
    tls: tuple[Path, Path, Path] | None = None  # (CA, certificate, key): serve HTTPS
    address: str = ADDRESS  # the suite's; a setup beside the suite has one of its own

    def _script(self, verb: str) -> None:
        env = {**os.environ, "IMAGEKIT_REGISTRY_DIR": str(self.folder),
               "IMAGEKIT_REGISTRY_ADDR": self.address}
        if self.htpasswd is not None:
            env["IMAGEKIT_REGISTRY_HTPASSWD"] = str(self.htpasswd)
        if self.tls is not None:
            env["IMAGEKIT_REGISTRY_TLS_CERT"] = str(self.tls[1])
            env["IMAGEKIT_REGISTRY_TLS_KEY"] = str(self.tls[2])
        subprocess.run([str(ROOT / "scripts" / "registry.sh"), verb], env=env, check=True,
                       capture_output=True, text=True, timeout=60)

    def start(self) -> None:
        self._script("start")

    def stop(self) -> None:
        self._script("stop")

    def get(self, path: str, **headers: str) -> requests.Response:
        scheme = "https" if self.tls else "http"
        return requests.get(f"{scheme}://{self.address}/v2/{path}", headers=headers, timeout=30,
                            auth=self.auth, verify=str(self.tls[0]) if self.tls else True)

    def tags(self, repository: str) -> list[str]:
        response = self.get(f"{repository}/tags/list")
        if response.status_code == 404:
            return []
        response.raise_for_status()
        return sorted(response.json().get("tags") or [])

    def manifest(self, repository: str, reference: str) -> tuple[str, dict[str, Any]]:
        accept = ("application/vnd.oci.image.manifest.v1+json, "
                  "application/vnd.docker.distribution.manifest.v2+json")
        response = self.get(f"{repository}/manifests/{reference}", Accept=accept)
        response.raise_for_status()
        return response.headers["Docker-Content-Digest"], response.json()

    def layer(self, repository: str, reference: str) -> bytes:
        """The one layer of an artifact (the catalog's JSON, a record), as the registry
        holds it."""
        _, manifest = self.manifest(repository, reference)
        (layer,) = manifest["layers"]
        response = self.get(f"{repository}/blobs/{layer['digest']}")
        response.raise_for_status()
        return response.content


def fresh_registry(folder: Path, address: str = ADDRESS) -> Iterator[LocalRegistry]:
    """A fixture body: an empty registry on the suite's address (or another of the suite's
    own), stopped after."""
    if answers(address):
        raise AssertionError(f"{address} already answers: another module's registry was "
                             "not stopped")
    local = LocalRegistry(folder, address=address)
    local.start()
    yield local
    local.stop()
    # Its blobs go with it: a module's registry holds gigabytes a CI disk needs back.
    shutil.rmtree(folder, ignore_errors=True)
