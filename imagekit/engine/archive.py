"""A root file system as an image of a given architecture, in the archive `docker load` reads.

`docker import` records the engine's own architecture whatever it is told (Docker 20.10
ignores --platform there), and BuildKit then refuses the image for `--platform linux/arm64`
and looks for it on Docker Hub. An image whose config says arm64 is what it finds: the
archive below is the one-layer image `docker save` would write, with that config. Docker and
Podman both load it through the same API call.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import IO

from imagekit.model import arch
from imagekit.schema import Platform

_CHUNK = 1 << 20
_VARIANTS = {"arm64": "v8"}  # what engines record for arm64 (and match a platform against)


def image_archive(rootfs: IO[bytes], ref: str, platform: Platform, folder: Path,
                  comment: str) -> Path:
    """Write `folder`/image.tar: the tar stream `rootfs` as the only layer of an image for
    `platform`, tagged `ref`. The layer is hashed as it is copied (its diff ID)."""
    layer = folder / "layer.tar"
    digest = hashlib.sha256()
    with layer.open("wb") as out:
        while chunk := rootfs.read(_CHUNK):
            digest.update(chunk)
            out.write(chunk)
    created = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    config: dict[str, object] = {
        "architecture": arch(platform),
        "os": "linux",
        "created": created,
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{digest.hexdigest()}"]},
        "history": [{"created": created, "created_by": comment}],
    }
    if arch(platform) in _VARIANTS:
        config["variant"] = _VARIANTS[arch(platform)]
    body = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    config_name = f"{hashlib.sha256(body).hexdigest()}.json"
    layer_name = f"{digest.hexdigest()}/layer.tar"
    manifest = json.dumps([{"Config": config_name, "RepoTags": [ref],
                            "Layers": [layer_name]}]).encode()
    archive = folder / "image.tar"
    with tarfile.open(archive, "w") as out:
        for name, data in ((config_name, body), ("manifest.json", manifest)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            out.addfile(info, io.BytesIO(data))
        out.add(layer, arcname=layer_name)
    layer.unlink()
    return archive
