"""Images shared between CI runners through the registry, under their tree tags.

A runner builds one image on top of its parent, which it pulls by digest (or finds loaded
from an artifact) instead of building; `imagekit push` puts the tested image, its SIF and
its *record* (the entry the catalog will give it: digest, tags, test results, packages,
SIF) in the registry under the image's tree tag, moving no tag a user follows. A last job
runs `imagekit publish --from-registry`: it reads every record for this checkout's tree
keys, moves the catalog's tags to those digests through the registry API (nothing is
pulled, built or pushed again) and publishes the catalog and the exports.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from imagekit.build import (
    TREE_LABEL,
    BuildReport,
    Display,
    Prepared,
    build_images,
    tree_keys,
    tree_tag,
)
from imagekit.engine.choice import connect
from imagekit.engine.client import Engine, ImageInfo
from imagekit.errors import BuildFailed, ImagekitError, Problem
from imagekit.model import Catalog, Image
from imagekit.publish.common import (
    EPOCH,
    RECORD_CONFIG_TYPE,
    RECORD_LAYER_TYPE,
    ImageReport,
    Log,
    PublishReport,
    base_of,
    records_repository,
)
from imagekit.publish.pipeline import publish_one
from imagekit.publish.preflight import preflight
from imagekit.publish.registry import Registry, holds
from imagekit.publish.release import reinstate
from imagekit.published.catalog import PublishedImage
from imagekit.said import Said


class RegistryShare:
    """`imagekit build --from-registry`: ancestors from the engine or the registry."""

    def __init__(self, catalog: Catalog, engine: Engine, log: Log) -> None:
        self.catalog, self.engine, self.log = catalog, engine, log
        self.registry = Registry(catalog)
        self._checked = False

    def _registry(self) -> Registry:
        if not self._checked:
            self.registry.check()
            self._checked = True
        return self.registry

    def has(self, image: Image, tree_key: str) -> bool:
        repository = self.catalog.repository(image.name)
        return self._registry().manifest(repository, tree_tag(tree_key)) is not None

    def fetch(self, image: Image, tree_key: str) -> tuple[ImageInfo, str]:
        local = self.engine.image(self.catalog.ref(image.name))
        if local is not None and local.labels.get(TREE_LABEL) == tree_key:
            self.log(f"[{image.name}] present in the engine for this checkout "
                     f"({tree_tag(tree_key)})")
            return local, "present"
        repository = self.catalog.repository(image.name)
        found = self._registry().manifest(repository, tree_tag(tree_key))
        if found is None:
            raise BuildFailed(
                f"{image.name} for this checkout ({repository}:{tree_tag(tree_key)}) is "
                "neither in the engine nor in the registry: its own job pushes it (`imagekit "
                f"push {image.name}`), or build it here without --from-registry")
        digest = found[0]
        self.log(f"[{image.name}] pulling {repository}@{digest}")
        info = self.engine.pull_digest(repository, digest, self.registry.engine_auth)
        if info.labels.get(TREE_LABEL) != tree_key:
            raise BuildFailed(f"{repository}@{digest} is labelled for tree key "
                              f"{info.labels.get(TREE_LABEL)!r}, not {tree_key}")
        return info, "pulled"

    def cache_from(self, image: Image) -> list[str]:
        # The image last published under the catalog's first tag: its inline cache gives
        # the layers a change left alone, even on an engine that built nothing yet.
        return [self.catalog.ref(image.name)]


def push(catalog: Catalog, engine: Engine, names: list[str], log: Log) -> list[ImageReport]:
    """Push tested images and their SIFs under their tree tags, with their records."""
    catalog.one_platform("push")
    candidates = preflight(catalog, engine, names, skip_tests=False)
    keys, _ = tree_keys(catalog, catalog.closure(names))
    problems = [
        Problem(catalog.file, f"images.{c.image.name}",
                f"image {c.info.id[:19]} was built from other inputs than this checkout "
                f"(tree key {str(c.info.labels.get(TREE_LABEL))[:12]}, the checkout's "
                f"{keys[c.image.name][:12]}): build it again")
        for c in candidates if c.info.labels.get(TREE_LABEL) != keys[c.image.name]]
    if problems:
        raise ImagekitError(problems)
    registry = Registry(catalog)
    registry.check()
    lines = []
    for candidate in candidates:
        name = candidate.image.name
        tag = tree_tag(keys[name])
        records = records_repository(catalog, name)
        before = _record(registry, catalog, name, tag)
        if before is not None and before.image_id == candidate.info.id:
            log(f"[{name}] already in the registry for this checkout ({before.reference})")
            lines.append(ImageReport(name, before.reference, before.tags, before.tested.status,
                                     0, before.size, 0.0,
                                     before.sif.reference if before.sif else ""))
            continue
        entry, line = publish_one(catalog, engine, registry, candidate, None, log,
                                  registry_tags=[tag])
        created = candidate.info.labels.get("org.opencontainers.image.created", EPOCH)
        with tempfile.TemporaryDirectory(prefix="imagekit-record-") as tmp:
            path = Path(tmp) / f"{name}.json"
            path.write_text(entry.model_dump_json(indent=2) + "\n")
            registry.push_artifact(records, [tag], path, RECORD_LAYER_TYPE,
                                   RECORD_CONFIG_TYPE, created)
        log(f"[{name}] record pushed to {records}:{tag}")
        lines.append(line)
    return lines


def push_images(catalog: Catalog, names: list[str], engine: str | None, log: Log) -> Said:
    """`imagekit push`: the named images from the engine chosen; a line per image pushed."""
    chosen = [i.name for i in catalog.select(names)]
    lines = push(catalog, connect(catalog, engine), chosen, log)
    return Said([f"{line.image}: {line.reference}" for line in lines],
                data={"images": [asdict(line) for line in lines]})


def _record(registry: Registry, catalog: Catalog, name: str,
            tag: str) -> PublishedImage | None:
    data = registry.pull_artifact(records_repository(catalog, name), tag, RECORD_LAYER_TYPE)
    if data is None:
        return None
    try:
        return PublishedImage.model_validate_json(data)
    except ValueError as exc:
        raise BuildFailed(f"{records_repository(catalog, name)}:{tag} is not an imagekit "
                          f"record: {str(exc).splitlines()[0]}") from None


def publish_from_registry(catalog: Catalog, names: list[str] | None,
                          log: Log) -> PublishReport:
    """The catalog from what the registry holds for this checkout: nothing is built."""
    started = time.monotonic()
    catalog.one_platform("publish --from-registry")
    registry = Registry(catalog)
    registry.check()
    explicit = names is not None
    wanted = ([catalog.images[n] for n in names] if names is not None else
              [i for i in catalog.images.values() if i.listed and i.publish])
    keys, _ = tree_keys(catalog, catalog.closure([i.name for i in wanted]))
    found: dict[str, PublishedImage] = {}
    problems: list[Problem] = []
    for image in wanted:
        tag = tree_tag(keys[image.name])
        record = _record(registry, catalog, image.name, tag)
        if record is None:
            if explicit:
                problems.append(Problem(catalog.file, f"images.{image.name}",
                                        f"the registry has no record for this checkout ({tag})"
                                        f": run `imagekit push {image.name}` first"))
            else:
                log(f"warning: {image.name}: the registry holds nothing for this checkout "
                    f"({tag}); the catalog keeps what it published before, if anything")
            continue
        manifest = registry.manifest(record.repository, record.digest)
        if manifest is None or not holds(record.image_id, *manifest):
            problems.append(Problem(catalog.file, f"images.{image.name}",
                                    f"{record.reference} is missing from the registry or is "
                                    "not the image its record names"))
            continue
        found[image.name] = record
    if problems:
        raise ImagekitError(problems)
    if not found:
        raise ImagekitError("nothing to publish: the registry holds no image for this checkout")
    return reinstate(catalog, registry, base_of(catalog, registry), found, started, log,
                     "from the registry")


def build_from_registry(ready: Prepared, say: Log, display: Callable[[list[str]], Display]
                        ) -> BuildReport:
    """`imagekit build --from-registry`, a CI runner's build: the build step, with each
    ancestor of the named images taken from the engine or the registry, never built."""
    return build_images(ready, say, display, RegistryShare(ready.catalog, ready.engine, say))
