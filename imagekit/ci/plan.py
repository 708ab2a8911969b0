"""The build graph as a CI system needs it: `imagekit plan`.

Derived from the stack tree and nothing else, so that every CI workflow and every runner
agrees on it: each image, its parent, its formats, the inputs of its key, and which images
change when a given file of the checkout changes.

An image's *tree key* is the digest of its build context (the rendered recipe and every
file it copies), its parent's tree key (the base image's reference for the root), the
imagekit version, the build arguments and the site's package sources, all without
credentials. Unlike the engine's cache key, which names the parent's image ID and so
exists only once the parent is built, the tree key is known from a checkout alone: it is
the tag under which CI runners share an image through the registry (`tree-<key>`), so
that an unchanged image is pulled, never rebuilt, and a runner that builds a child pulls
exactly the parent this checkout describes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ClassVar

from imagekit.build import tree_inputs_of, tree_tag
from imagekit.model import Catalog, Image, Stack
from imagekit.said import Rows, Said


@dataclass(frozen=True)
class Inputs:
    """What an image's tree key is the digest of (build.TreeInputs), each file shown."""

    context: str  # sha256 of the build context, as the engine would get it
    files: dict[str, str]  # each context file's sha256
    parent: str  # the parent's tree key, or the base image's reference for the root
    imagekit: str
    build_args: dict[str, str]  # without credentials
    site: dict[str, str]  # the site's package sources, without credentials


@dataclass(frozen=True)
class PlannedImage:
    name: str
    parent: str | None  # None: FROM the catalog's base image
    from_: str  # the reference the recipe's FROM names
    stack: str
    profiles: list[str]
    formats: list[str]
    listed: bool
    publish: bool
    gpu: bool
    type: str
    repository: str
    ref: str  # the local reference builds tag it with
    level: int  # 0 for the root; an image builds once every image of a lower level has
    children: list[str]
    key: str
    tag: str  # tree-<key>: the tag runners share the image under
    inputs: Inputs
    sources: list[str]  # the files of the checkout this image is made from


@dataclass(frozen=True)
class Plan:
    registry: str
    namespace: str
    base: str
    images: list[PlannedImage]
    waves: list[list[str]]  # images that can build side by side, parents' wave first
    bootstrap: bool  # the base image is bootstrapped with debootstrap when it cannot be pulled
    changes: dict[str, list[str]] = field(default_factory=dict)  # file -> images it rebuilds

    COLUMNS: ClassVar[tuple[str, ...]] = ("wave", "image", "FROM", "formats", "tree key",
                                          "files")

    def image(self, name: str) -> PlannedImage:
        return next(i for i in self.images if i.name == name)

    def rows(self) -> list[tuple[str, ...]]:
        """The plan as `imagekit plan` tabulates it, a row per image."""
        return [(str(i.level), i.name, i.parent or i.from_, "+".join(i.formats), i.key[:12],
                 str(len(i.sources))) for i in self.images]

    def closing(self) -> str:
        return (f"{len(self.images)} images in {len(self.waves)} waves. `--json` for each "
                "image's key inputs and files, `--changed FILE` for what a change rebuilds.")

    def affected(self, paths: Iterable[str]) -> list[str]:
        """The images a change to these files rebuilds (descendants included), build order."""
        hit = {name for p in paths for name in self.changes.get(_normal(p), ())}
        return [i.name for i in self.images if i.name in hit]

    def as_dict(self) -> dict[str, object]:
        data = asdict(self)
        for image in data["images"]:
            image["from"] = image.pop("from_")
        return data

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2) + "\n"

    def said(self, changed: list[str] | None, as_json: bool) -> Said:
        """`imagekit plan`: the images `changed` files rebuild, one a line; else the whole
        plan, as JSON or a table."""
        if changed is not None:
            return Said(self.affected(changed))
        if as_json:
            return Said(text=self.to_json())
        return Said([Rows(self.COLUMNS, self.rows(), no_wrap=True), self.closing()])


def _normal(path: str) -> str:
    return Path(path).as_posix().removeprefix("./")


def _relative(catalog: Catalog, path: Path) -> str:
    """A checkout path relative to the catalog's folder; outside it, absolute."""
    path = path.resolve()
    try:
        return path.relative_to(catalog.root).as_posix()
    except ValueError:
        return str(path)


def own_sources(catalog: Catalog, image: Image) -> list[str]:
    """The files an image's own recipe and context are made from (its parent's not
    included: a change there reaches it through the parent)."""
    paths: set[Path] = {catalog.file}
    for stack in _stack_lineage(catalog, image.stack.name):
        paths.add(stack.file)  # inherited env, labels and checks reach the recipe
    if image.stack.lock is not None:
        paths.add(image.stack.lock.file)
    for profile in (*image.profiles, *catalog.site_profiles):
        paths.add(profile.file)
    for layer in image.layers:
        paths.update(f.source for f in layer.files)
    if catalog.site.ca_bundle:
        paths.add(Path(catalog.site.ca_bundle))
    return sorted({_relative(catalog, p) for p in paths})


def _stack_lineage(catalog: Catalog, name: str) -> list[Stack]:
    chain: list[Stack] = []
    current: str | None = name
    while current is not None:
        stack = catalog.stacks[current]
        chain.append(stack)
        current = stack.parent
    return chain


def make_plan(catalog: Catalog) -> Plan:
    images = list(catalog.images.values())  # parents first
    trees, contexts = tree_inputs_of(catalog, images)
    levels: dict[str, int] = {}
    planned: list[PlannedImage] = []
    for image in images:
        context, tree = contexts[image.name], trees[image.name]
        key = tree.digest()
        levels[image.name] = 0 if image.parent is None else levels[image.parent] + 1
        planned.append(PlannedImage(
            name=image.name,
            parent=image.parent,
            from_=catalog.parent_ref(image),
            stack=image.stack.name,
            profiles=[p.name for p in image.profiles],
            formats=list(image.formats),
            listed=image.listed,
            publish=image.publish,
            gpu=image.runtime.gpu,
            type=image.runtime.type,
            repository=catalog.repository(image.name),
            ref=catalog.ref(image.name),
            level=levels[image.name],
            children=list(catalog.children.get(image.name, ())),
            key=key,
            tag=tree_tag(key),
            inputs=Inputs(
                context=tree.context,
                files={p: hashlib.sha256(d).hexdigest()
                       for p, d in sorted(context.files.items())},
                parent=tree.parent,
                imagekit=tree.imagekit,
                build_args=dict(tree.build_args),
                site=dict(tree.site),
            ),
            sources=own_sources(catalog, image),
        ))
    waves = [[i.name for i in planned if i.level == n]
             for n in range(max(levels.values(), default=-1) + 1)]
    return Plan(catalog.registry, catalog.namespace, catalog.base.image, planned, waves,
                catalog.base.bootstrap is not None, _changes(catalog, planned))


def _changes(catalog: Catalog, planned: list[PlannedImage]) -> dict[str, list[str]]:
    """Each source file -> every image it rebuilds: those made from it and their
    descendants, in build order."""
    below: dict[str, list[str]] = {}
    for image in reversed(planned):  # children before parents
        below[image.name] = [image.name, *(n for c in image.children for n in below[c])]
    order = {image.name: n for n, image in enumerate(planned)}
    changes: dict[str, set[str]] = {}
    for image in planned:
        for source in image.sources:
            changes.setdefault(source, set()).update(below[image.name])
    return {path: sorted(names, key=order.__getitem__)
            for path, names in sorted(changes.items())}
