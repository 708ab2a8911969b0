"""The resolved model: what every later step (render, build, test, SIF, export) reads.

Inheritance is already applied here; nothing downstream re-reads YAML or walks `extends`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from imagekit.errors import ImagekitError, Problem, did_you_mean
from imagekit.said import Node, Rows, Said
from imagekit.schema import (
    Bootstrap,
    Checks,
    CommandCheck,
    Consumer,
    ExecuteCheck,
    Format,
    Healthcheck,
    HttpCheck,
    NotebookType,
    Platform,
    SiteSettings,
    VersionTag,
)


@dataclass(frozen=True)
class FileCopy:
    source: Path  # on the host
    context_path: str  # where it sits in the build context / recipe folder
    dest: str  # in the image
    mode: str


@dataclass(frozen=True)
class Layer:
    """One step of content: a stack's own additions, or a profile's."""

    origin: str  # "stack scipy" / "profile slurm-host"
    apt: tuple[str, ...] = ()
    setup: tuple[str, ...] = ()
    pip: tuple[str, ...] = ()
    npm: tuple[str, ...] = ()
    post: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    args: tuple[tuple[str, str], ...] = ()
    files: tuple[FileCopy, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    binds: tuple[str, ...] = ()


@dataclass(frozen=True)
class MergedChecks:
    imports: tuple[str, ...] = ()
    commands: tuple[CommandCheck, ...] = ()
    kernels: tuple[str, ...] = ()
    http: tuple[HttpCheck, ...] = ()
    execute: tuple[ExecuteCheck, ...] = ()

    def plus(self, other: Checks) -> MergedChecks:
        def add(mine: tuple[object, ...], theirs: list[object]) -> tuple[object, ...]:
            return mine + tuple(x for x in theirs if x not in mine)

        return MergedChecks(
            imports=add(self.imports, list(other.imports)),  # type: ignore[arg-type]
            commands=add(self.commands, list(other.commands)),  # type: ignore[arg-type]
            kernels=add(self.kernels, list(other.kernels)),  # type: ignore[arg-type]
            http=add(self.http, list(other.http)),  # type: ignore[arg-type]
            execute=add(self.execute, list(other.execute)),  # type: ignore[arg-type]
        )


@dataclass(frozen=True)
class Runtime:
    """How a container of the image is started; inherited down the stack tree."""

    type: NotebookType
    gpu: bool
    port: int
    entrypoint: tuple[str, ...]
    command: tuple[str, ...]
    user: str
    uid: int
    gid: int
    venv: str
    healthcheck: Healthcheck


@dataclass(frozen=True)
class PipLock:
    """stacks/<name>.lock as `imagekit lock` wrote it (imagekit.lockfile reads and writes it)."""

    file: Path
    text: str
    inputs: str  # digest of what it was resolved from
    pins: tuple[tuple[str, str], ...]  # (normalised name, version)
    added: tuple[tuple[str, str], ...] = ()  # those added since the lock was settled


@dataclass(frozen=True)
class Stack:
    name: str
    file: Path
    description: str
    parent: str | None
    layer: Layer  # this stack's own additions
    runtime: Runtime
    env: tuple[tuple[str, str], ...]  # everything inherited, child wins
    labels: tuple[tuple[str, str], ...]
    checks: MergedChecks  # inherited down the tree
    version_tags: tuple[VersionTag, ...]
    apt_all: tuple[str, ...]  # for `show`: everything a user of this stack gets
    pip_all: tuple[str, ...]
    pip_exclude_all: tuple[str, ...]  # never installed, in this stack or below it
    apt_exclude: tuple[str, ...]  # this stack's own dpkg path-excludes (inherited by dpkg)
    pip_prune_all: tuple[str, ...]  # removed from site-packages after each install
    npm_all: tuple[str, ...]
    lock: PipLock | None = None  # stacks/<name>.lock, when there is one
    pip_layers: tuple[str, ...] = ()  # name patterns, one settled layer each (normalised)


@dataclass(frozen=True)
class Profile:
    name: str
    file: Path
    description: str
    layer: Layer
    site: SiteSettings
    checks: Checks


@dataclass(frozen=True)
class Resources:
    cpu: str
    memory: str
    gpus: int


@dataclass(frozen=True)
class Image:
    name: str
    stack: Stack
    profiles: tuple[Profile, ...]  # layered on the stack image (empty for a stack image)
    parent: str | None  # name of the image this one is FROM, None: the catalog's base image
    layers: tuple[Layer, ...]  # what this image's recipe adds on top of its parent
    formats: tuple[Format, ...]
    tags: tuple[str, ...]
    description: str
    publish: bool
    listed: bool  # False: built only because a listed image needs it as a parent
    checks: MergedChecks
    binds: tuple[str, ...]
    env: tuple[tuple[str, str], ...]  # the whole environment the image ends up with
    resources: Resources = Resources("1", "2Gi", 0)
    consumers: tuple[Consumer, ...] = ()
    platforms: tuple[Platform, ...] = ("linux/amd64",)

    @property
    def runtime(self) -> Runtime:
        return self.stack.runtime


def arch(platform: Platform) -> str:
    """linux/arm64 -> arm64: the architecture as Docker, OCI and SIF name it."""
    return platform.partition("/")[2]


@dataclass(frozen=True)
class BaseSource:
    image: str
    pull: bool
    bootstrap: Bootstrap | None
    max_age_days: int | None = None


@dataclass(frozen=True)
class Catalog:
    root: Path
    file: Path
    registry: str
    namespace: str
    base: BaseSource
    site: SiteSettings  # merged build settings of the site profiles
    site_profiles: tuple[Profile, ...]
    tags: tuple[str, ...]
    stacks: dict[str, Stack]
    profiles: dict[str, Profile]
    images: dict[str, Image]  # in build order: parents before children
    defaults: dict[str, str]
    source: str
    vendor: str
    children: dict[str, tuple[str, ...]] = field(default_factory=dict)
    insecure_registry: bool = False
    sif_directory: str | None = None
    sif_compression: str = "gzip"  # the SIFs' squashfs: gzip or zstd
    sif_level: int | None = None  # None: the compression's default (imagekit.schema.SIF_LEVELS)
    layer_compression: str = "gzip"  # the image layers in the registry: gzip or zstd
    layer_level: int | None = None  # zstd's; None: imagekit.schema.ZSTD_LAYER_LEVELS[0]
    engine: str = "auto"
    platforms: tuple[Platform, ...] = ("linux/amd64",)

    @property
    def dist(self) -> Path:
        return self.root / "dist"

    def suffix(self, platform: Platform | None) -> str:
        """What the local tags of a platform's images end with: nothing for the catalog's
        first platform (so a one-architecture catalog names images as before), -ARCH for
        the others (`scipy:latest-arm64`). A tag holds one image; an index holds them all."""
        if platform is None or platform == self.platforms[0]:
            return ""
        return f"-{arch(platform)}"

    def repository(self, image: str) -> str:
        return f"{self.registry}/{self.namespace}/{image}"

    def sif_repository(self, image: str) -> str:
        return self.repository(f"sif/{image}")

    def ref(self, image: str, tag: str | None = None, platform: Platform | None = None) -> str:
        return f"{self.repository(image)}:{tag or self.tags[0]}{self.suffix(platform)}"

    def base_ref(self, platform: Platform | None = None) -> str:
        """The base image's local reference for a platform (`imagekit/debian:bookworm-arm64`)."""
        suffix = self.suffix(platform)
        if not suffix:
            return self.base.image
        name, _, tag = self.base.image.rpartition(":")
        if not name or "/" in tag:  # no tag of its own
            return f"{self.base.image}:latest{suffix}"
        return f"{name}:{tag}{suffix}"

    def parent_ref(self, image: Image, platform: Platform | None = None) -> str:
        if image.parent is None:
            return self.base_ref(platform)
        return self.ref(image.parent, platform=platform)

    def lineage(self, name: str) -> list[Image]:
        """The image and its ancestors, root first."""
        chain: list[Image] = []
        current: str | None = name
        while current is not None:
            image = self.images[current]
            chain.append(image)
            current = image.parent
        return chain[::-1]

    def closure(self, names: list[str]) -> list[Image]:
        """The named images plus every ancestor, each once, parents first (build order)."""
        wanted = {img.name for name in names for img in self.lineage(name)}
        return [img for img in self.images.values() if img.name in wanted]

    def one_platform(self, command: str) -> None:
        """CI runners share one architecture's images, so far: a catalog of several
        platforms is published by `imagekit publish` on a machine that builds them all, as
        indexes."""
        if len(self.platforms) > 1:
            raise ImagekitError(Problem(
                self.file, "platforms", f"{', '.join(self.platforms)}: `imagekit {command}` "
                "(CI runners) shares one architecture's images; publish an index of several "
                "with `imagekit publish` on a machine that builds them all"))

    def select(self, names: list[str], all_: bool = False) -> list[Image]:
        """The images a command names (every one with `--all`); an unknown name is bad input."""
        if all_:
            return list(self.images.values())
        if not names:
            raise ImagekitError("name at least one image, or pass --all")
        problems = [
            Problem(self.file, "images", f"unknown image {n!r}", None,
                    did_you_mean(n, self.images))
            for n in names if n not in self.images
        ]
        if problems:
            raise ImagekitError(problems)
        return [self.images[n] for n in names]

    def choose_platforms(self, given: list[str] | None) -> tuple[Platform, ...]:
        """The platforms a command works on: those given (each one of the catalog's), else
        all of the catalog's."""
        if not given:
            return self.platforms
        chosen: list[Platform] = []
        for value in given:
            found = next((p for p in self.platforms if p == value), None)
            if found is None:
                raise ImagekitError(f"--platform: {value!r} is not among the catalog's "
                                    f"platforms ({', '.join(self.platforms)}; "
                                    f"{self.file.name}: platforms)")
            chosen.append(found)
        return tuple(dict.fromkeys(chosen))

    def on(self, name: str, platform: Platform) -> str:
        """An image as reports name it: plain on the catalog's first platform, `name [p]`
        else."""
        return name if platform == self.platforms[0] else f"{name} [{platform}]"

    def flags(self, name: str) -> list[str]:
        """What the image tree says of an image: type, GPU, formats, platforms, profiles."""
        img = self.images[name]
        flags = [img.runtime.type, "gpu" if img.runtime.gpu else "cpu", "+".join(img.formats)]
        if len(self.platforms) > 1:
            flags.append("+".join(arch(p) for p in img.platforms))
        if img.profiles:
            flags.append("profiles: " + ",".join(p.name for p in img.profiles))
        if not img.listed:
            flags.append("parent only")
        return flags

    def summary(self) -> str:
        """What `imagekit validate` says of a catalog that loaded."""
        listed = sum(1 for i in self.images.values() if i.listed)
        return (f"ok: {len(self.stacks)} stacks, {len(self.profiles)} profiles, {listed} "
                f"images ({len(self.images)} with the parents they need)")

    def tree(self) -> Said:
        """`imagekit list`: the image tree from the base image down, or its `listing`."""
        def node(name: str) -> Node:
            return Node(f"[bold]{name}[/]  [dim]{'  '.join(self.flags(name))}[/]",
                        [node(child) for child in self.children[name]])

        roots = [node(i.name) for i in self.images.values() if i.parent is None]
        return Said([Node(f"[bold]{self.base.image}[/] (base image)", roots)],
                    data=self.listing())

    def listing(self) -> list[dict[str, object]]:
        """Every image as `imagekit list --json` gives it."""
        return [
            {"name": i.name, "parent": i.parent, "stack": i.stack.name,
             "profiles": [p.name for p in i.profiles], "type": i.runtime.type,
             "gpu": i.runtime.gpu, "formats": list(i.formats), "listed": i.listed,
             "platforms": list(i.platforms), "ref": self.ref(i.name)}
            for i in self.images.values()
        ]

    def describe(self, name: str) -> Rows:
        """An image's resolved settings, everything it inherits included (`imagekit show`)."""
        img = self.select([name])[0]
        rt, c = img.runtime, img.checks
        lineage = " -> ".join(i.name for i in self.lineage(img.name))
        extra_apt = tuple(a for p in img.profiles for a in p.layer.apt)
        extra_pip = tuple(a for p in img.profiles for a in p.layer.pip)
        return Rows(("", ""), header=False, rows=[
            ("image", f"{img.name}  ({self.ref(img.name)})"),
            ("stack", f"{img.stack.name}  ({img.stack.file})"),
            ("lineage", f"{self.base.image} -> {lineage}"),
            ("profiles", ", ".join(p.name for p in img.profiles) or "-"),
            ("site profiles", ", ".join(p.name for p in self.site_profiles) or "-"),
            ("description", img.description),
            ("type / gpu / port", f"{rt.type} / {rt.gpu} / {rt.port}"),
            ("user", f"{rt.user} ({rt.uid}:{rt.gid})"),
            ("start", " ".join((*rt.entrypoint, *rt.command))),
            ("formats / tags", f"{', '.join(img.formats)} / {', '.join(img.tags)}"),
            ("apt", " ".join(img.stack.apt_all + extra_apt)),
            ("pip", " ".join(img.stack.pip_all + extra_pip)),
            ("npm", " ".join(img.stack.npm_all) or "-"),
            ("env", " ".join(f"{k}={v}" for k, v in img.env)),
            ("binds", ", ".join(img.binds) or "-"),
            ("checks", f"{len(c.imports)} imports, {len(c.commands)} commands, kernels "
                       f"{','.join(c.kernels) or '-'}, {len(c.http)} http, "
                       f"{len(c.execute)} executions"),
        ])


__all__ = [
    "BaseSource",
    "Catalog",
    "FileCopy",
    "Image",
    "Layer",
    "MergedChecks",
    "PipLock",
    "Profile",
    "Resources",
    "Runtime",
    "Stack",
    "arch",
]
