"""What publishing knows of how an image and its SIF were made, gathered for its provenance
statement (imagekit.attest.provenance): the image's own labels, its lock files, and its
ancestors back to the base image, followed by image ID through the engine."""

from __future__ import annotations

import hashlib
from pathlib import Path

from imagekit import __version__
from imagekit.attest.provenance import Dependency, Provenance
from imagekit.build import PARENT_LABEL, TREE_LABEL
from imagekit.engine.client import Engine
from imagekit.model import Catalog, Image
from imagekit.publish.common import EPOCH
from imagekit.publish.preflight import Candidate
from imagekit.sif import read_sidecar


def provenance_of(catalog: Catalog, engine: Engine, candidate: Candidate, repository: str,
                  digest: str, sif_sha256: str) -> Provenance:
    image, info = candidate.image, candidate.info
    sif = candidate.sif
    return Provenance(
        image=image.name, repository=repository, digest=digest, image_id=info.id,
        platform=candidate.platform, stack=image.stack.name,
        profiles=tuple(p.name for p in image.profiles),
        tree_key=info.labels.get(TREE_LABEL, ""),
        dependencies=(*_ancestors(catalog, engine, image, info.labels), *_locks(catalog, image)),
        imagekit=__version__, engine=engine.description,
        created=info.labels.get("org.opencontainers.image.created", EPOCH),
        sif_file=sif.name if sif is not None else "",
        sif_sha256=sif_sha256,
        sif_from=str((read_sidecar(sif) or {}).get("image_id", "")) if sif is not None else "")


def _ancestors(catalog: Catalog, engine: Engine, image: Image,
               labels: dict[str, str]) -> list[Dependency]:
    """The parent image by ID, then up the tree to the base image, as far as the engine
    still holds the ancestors."""
    found = []
    parent_id = labels.get(PARENT_LABEL, "")
    current: Image | None = image
    while parent_id and current is not None:
        name = current.parent
        if name is None:
            found.append(Dependency("base", parent_id.removeprefix("sha256:"), catalog.base.image))
            break
        if current is image:
            found.append(Dependency("parent", parent_id.removeprefix("sha256:"),
                                    catalog.repository(name)))
        info = engine.image(parent_id)
        if info is None:
            break
        parent_id = info.labels.get(PARENT_LABEL, "")
        current = catalog.images.get(name)
    return found


def _locks(catalog: Catalog, image: Image) -> list[Dependency]:
    """The lock file of the image's stack and of each stack above it."""
    found = []
    stack = image.stack
    while True:
        if stack.lock is not None:
            found.append(Dependency(_relative(catalog, stack.lock.file),
                                    hashlib.sha256(stack.lock.text.encode()).hexdigest()))
        if stack.parent is None or stack.parent not in catalog.stacks:
            return found
        stack = catalog.stacks[stack.parent]


def _relative(catalog: Catalog, path: Path) -> str:
    try:
        return str(path.relative_to(catalog.root))
    except ValueError:
        return path.name
