"""The catalog's registry for the tests: Debian's docker-registry on 127.0.0.1:5055, started
through the same scripts/registry.sh that `make demo` uses, with data in a folder of its own
so that every test session starts from an empty registry."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[2]
ADDRESS = "127.0.0.1:5055"  # the catalog's registry: local image names carry it


def answers() -> bool:
    try:
        return requests.get(f"http://{ADDRESS}/v2/", timeout=2).status_code in (200, 401)
    except requests.RequestException:
        return False


@dataclass
class LocalRegistry:
    folder: Path
    htpasswd: Path | None = None  # set: the registry asks for credentials
    auth: tuple[str, str] | None = None  # what the tests themselves send

    def _script(self, verb: str) -> None:
        env = {**os.environ, "IMAGEKIT_REGISTRY_DIR": str(self.folder),
               "IMAGEKIT_REGISTRY_ADDR": ADDRESS}
        if self.htpasswd is not None:
            env["IMAGEKIT_REGISTRY_HTPASSWD"] = str(self.htpasswd)
        subprocess.run([str(ROOT / "scripts" / "registry.sh"), verb], env=env, check=True,
                       capture_output=True, text=True, timeout=60)

    def start(self) -> None:
        self._script("start")

    def stop(self) -> None:
        self._script("stop")

    def get(self, path: str, **headers: str) -> requests.Response:
        return requests.get(f"http://{ADDRESS}/v2/{path}", headers=headers, timeout=30,
                            auth=self.auth)

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
