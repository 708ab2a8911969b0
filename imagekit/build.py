"""Plan and run image builds: parents first, each image once, unchanged ones not rebuilt.

The cache key of an image is the digest of its `KeyInputs`: everything that makes the image
what it is (build context, parent image ID, builder, imagekit version, build arguments, the
site's package sources) and nothing that only names it (tags). It is recorded in the image
as a label, so "already built from identical inputs" is a question for the engine, not for a
state file. A cached image gets the catalog's new tags without a rebuild; a built one is
tagged only after its build succeeded.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Protocol

from imagekit import __version__
from imagekit.credentials import SiteUrl, redact, secret_words, site_urls
from imagekit.engine.builders import Builder, BuildRequest
from imagekit.engine.client import Engine, Identity, ImageInfo
from imagekit.engine.context import BuildContext, assemble
from imagekit.engine.emulation import native
from imagekit.engine.errors import SERVICE_ERRORS
from imagekit.errors import BuildFailed, ImagekitError, one_line
from imagekit.model import Catalog, Image
from imagekit.said import Rows, Said
from imagekit.schema import Platform
from imagekit.units import human_size

if TYPE_CHECKING:
    from types import TracebackType

    from imagekit.sif import SifResult

CACHE_LABEL = "io.imagekit.cache-key"
TREE_LABEL = "io.imagekit.tree-key"  # the checkout's key of the image (TreeInputs)
PARENT_LABEL = "io.imagekit.parent-digest"  # the image ID it was built FROM
BUILT_BY_LABEL = "io.imagekit.built-by"  # the engine that built it (engine.client.Identity)
TREE_TAG = "tree-"  # the registry tag CI runners share an image under: tree-<key>
KEY_CHARS = 32  # of the key's hex in that tag: 128 bits

StepProgress = Callable[[str, str], None]  # image, log line


@dataclass
class Outcome:
    image: str
    ref: str
    status: str  # built, cached, failed, skipped, planned
    seconds: float = 0.0
    size: int = 0
    image_id: str = ""
    tags: list[str] = field(default_factory=list)
    error: str = ""
    retagged: list[str] = field(default_factory=list)  # catalog tags a cached image just got
    platform: Platform = "linux/amd64"

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class KeyInputs:
    """Everything that makes an image what it is, and nothing that only names it.

    Tags are not here: a tag added to the catalog is put on the cached image instead. Nor is
    any credential: a rotated password must neither rebuild nor reach a label value.
    """

    # The recipe (with its LABELs and FROM), layer files and their modes, CA bundle, wheels.
    context: str
    parent_id: str  # a rebuilt parent rebuilds its children
    builder: str  # buildkit or classic: the classic builder gets a rewritten recipe
    imagekit: str  # the io.imagekit.version label, and how the steps above are done
    build_args: tuple[tuple[str, str], ...]  # as the builder gets them, without credentials
    # Every site setting that reaches the build (package sources, proxies), without
    # credentials, whichever way it gets there: a BuildKit secret is not in the context.
    site: tuple[tuple[str, str], ...]

    def digest(self) -> str:
        text = json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class TreeInputs:
    """What an image's tree key is the digest of: its key as a checkout alone determines it.

    Unlike the cache key, which names the parent's image ID and so exists only once the
    parent is built, the tree key names the parent's tree key (the base image's reference
    for the root): CI runners share images through the registry under it (`tree-<key>`).
    """

    context: str  # the build context's digest (BuildContext.digest)
    parent: str  # the parent's tree key, or the base image's reference for the root
    imagekit: str
    build_args: tuple[tuple[str, str], ...]  # without credentials
    site: tuple[tuple[str, str], ...]  # the site's package sources, without credentials

    def digest(self) -> str:
        text = json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


def tree_inputs(catalog: Catalog, context: BuildContext, parent: str) -> TreeInputs:
    return TreeInputs(
        context=context.digest(),
        parent=parent,
        imagekit=__version__,
        build_args=public_build_args(catalog),
        site=site_sources(catalog),
    )


def tree_tag(key: str) -> str:
    return f"{TREE_TAG}{key[:KEY_CHARS]}"


@dataclass(frozen=True)
class PlannedBuild:
    image: Image
    ref: str
    refs: tuple[str, ...]  # every catalog and image tag, `ref` first
    context: BuildContext
    parent: ImageInfo | None  # None: the parent is not built yet
    inputs: KeyInputs | None  # None: not knowable before the parent exists
    tree_key: str = ""

    @property
    def cache_key(self) -> str | None:
        return None if self.inputs is None else self.inputs.digest()


def build_args(catalog: Catalog) -> dict[str, str]:
    proxy = catalog.site.proxy
    args: dict[str, str] = {}
    if proxy is not None:
        # Docker's predefined proxy ARGs: used by RUN, kept out of `docker history`.
        for name, value in (("HTTP_PROXY", proxy.http), ("HTTPS_PROXY", proxy.https),
                            ("NO_PROXY", proxy.no_proxy or None)):
            if value:
                args[name] = value
                args[name.lower()] = value
    return args


def secrets(catalog: Catalog) -> dict[str, str]:
    """Build secrets: never in the context, a layer or the cache key."""
    site = catalog.site
    out = {}
    if site.pip_index_url:
        out["pip_index_url"] = site.pip_index_url
    if site.pip_extra_index_url:
        out["pip_extra_index_url"] = site.pip_extra_index_url
    if site.npm_registry and SiteUrl(site.npm_registry).has_credentials:
        out["npm_registry"] = site.npm_registry
    if site.apt_mirror and SiteUrl(site.apt_mirror).has_credentials:
        out["apt_auth"] = SiteUrl(site.apt_mirror).apt_auth()
    return out


def check_builder(catalog: Catalog, builder: Builder) -> None:
    """Refuse before building anything what this builder could only bake into a layer."""
    found = secrets(catalog)
    if builder.name == "classic" and found:
        raise ImagekitError(
            f"the site passes {', '.join(sorted(found))} as build secrets (a credential, or "
            "a URL that may carry one), which the classic builder cannot keep out of the "
            "image: use --builder buildkit")


def public_url(value: str) -> str:
    """The value without a URL's user:password@; anything else unchanged."""
    return SiteUrl(value).public if "://" in value else value


SITE_SOURCES = ("apt_mirror", "pip_index_url", "pip_extra_index_url", "npm_registry",
                "proxy.http", "proxy.https")


def site_sources(catalog: Catalog) -> tuple[tuple[str, str], ...]:
    """Every site URL (credentials.site_urls), without credentials, and the no_proxy list."""
    urls = site_urls(catalog.site)
    proxy = catalog.site.proxy
    return (*((name, public_url(urls.get(name, ""))) for name in SITE_SOURCES),
            ("proxy.no_proxy", proxy.no_proxy if proxy else ""))


def public_build_args(catalog: Catalog) -> tuple[tuple[str, str], ...]:
    """The build arguments as the builder gets them, without credentials, sorted."""
    args = build_args(catalog)
    return tuple((name, public_url(args[name])) for name in sorted(args))


def key_inputs(catalog: Catalog, context: BuildContext, parent_id: str,
               builder: str) -> KeyInputs:
    return KeyInputs(
        context=context.digest(),
        parent_id=parent_id,
        builder=builder,
        imagekit=__version__,
        build_args=public_build_args(catalog),
        site=site_sources(catalog),
    )


def plan_one(catalog: Catalog, engine: Engine, builder: str, image: Image,
             context: BuildContext, tree_key: str,
             platform: Platform | None = None) -> PlannedBuild:
    parent = engine.image(catalog.parent_ref(image, platform))
    inputs = key_inputs(catalog, context, parent.id, builder) if parent is not None else None
    refs = tuple(catalog.ref(image.name, tag, platform) for tag in image.tags)
    return PlannedBuild(image, catalog.ref(image.name, platform=platform), refs, context,
                        parent, inputs, tree_key)


def tree_inputs_of(catalog: Catalog, images: list[Image], platform: Platform | None = None
                   ) -> tuple[dict[str, TreeInputs], dict[str, BuildContext]]:
    """The tree key's inputs and the build context of each image (a closure: parents
    first), each context assembled once. A platform's root names its own base, so every key
    differs between platforms while the catalog's first keeps the keys it always had."""
    inputs: dict[str, TreeInputs] = {}
    contexts: dict[str, BuildContext] = {}
    for image in images:
        contexts[image.name] = assemble(catalog, image, platform)
        parent = (catalog.base_ref(platform) if image.parent is None
                  else inputs[image.parent].digest())
        inputs[image.name] = tree_inputs(catalog, contexts[image.name], parent)
    return inputs, contexts


def tree_keys(catalog: Catalog, images: list[Image], platform: Platform | None = None
              ) -> tuple[dict[str, str], dict[str, BuildContext]]:
    """The tree key and build context of each image (a closure: parents first)."""
    inputs, contexts = tree_inputs_of(catalog, images, platform)
    return {name: found.digest() for name, found in inputs.items()}, contexts


def cached(engine: Engine, build: PlannedBuild) -> ImageInfo | None:
    """The engine's image for this build when it was built from identical inputs.

    Looked up under each of the image's catalog tags, so that an image whose first tag was
    replaced or added is still found by the others.
    """
    if build.cache_key is None:
        return None
    for ref in build.refs:
        existing = engine.image(ref)
        if (existing is not None and existing.labels.get(CACHE_LABEL) == build.cache_key
                and existing.labels.get(TREE_LABEL) == build.tree_key):
            return existing
    return None


def build_labels(build: PlannedBuild, created: dt.datetime, built_by: str) -> dict[str, str]:
    """The labels set at build time: the key, functions of the key's inputs, and the two
    facts of the build itself, its time and the engine that did it (`built_by`: engine,
    version, builder, image store), which the published catalog keeps.

    A label taken from anything else (a tag, say) would give images with equal keys
    different contents, and a cached image a stale label.
    """
    assert build.inputs is not None
    return {
        BUILT_BY_LABEL: built_by,
        CACHE_LABEL: build.inputs.digest(),
        TREE_LABEL: build.tree_key,
        PARENT_LABEL: build.inputs.parent_id,
        "io.imagekit.recipe-hash": hashlib.sha256(build.context.files["Dockerfile"]).hexdigest(),
        "io.imagekit.version": build.inputs.imagekit,
        "org.opencontainers.image.created": created.isoformat(),
    }


def dry_run(catalog: Catalog, engine: Engine, builder: Builder, names: list[str],
            platform: Platform | None = None) -> list[Outcome]:
    platform = platform or catalog.platforms[0]
    outcomes = []
    closure = catalog.closure([n for n in names if platform in catalog.images[n].platforms])
    keys, contexts = tree_keys(catalog, closure, platform)
    for image in closure:
        build = plan_one(catalog, engine, builder.name, image, contexts[image.name],
                         keys[image.name], platform)
        status = "cached" if cached(engine, build) is not None else "planned"
        outcomes.append(Outcome(image.name, build.ref, status, platform=platform))
    return outcomes


class Shared(Protocol):
    """Where CI runners share images: the registry, under each image's tree tag."""

    def has(self, image: Image, tree_key: str) -> bool:
        """The registry holds this image built from these very inputs."""

    def fetch(self, image: Image, tree_key: str) -> tuple[ImageInfo, str]:
        """The image for this tree key, from the engine (loaded from a CI artifact, say) or
        pulled from the registry by digest: (its info, "present" or "pulled"). Raises
        BuildFailed when neither has it."""

    def cache_from(self, image: Image) -> list[str]:
        """Registry references whose inline layer cache a build of the image may reuse."""


def run_builds(
    catalog: Catalog,
    engine: Engine,
    builder: Builder,
    names: list[str],
    *,
    force: bool = False,
    on_line: StepProgress,
    on_status: Callable[[Outcome], None],
    ensure_root: Callable[[], object] = lambda: None,
    shared: Shared | None = None,
    platform: Platform | None = None,
    built_by: str | None = None,
) -> list[Outcome]:
    """Build the named images and what they need, parents first, for one platform (default:
    the catalog's first): the images not built for it are left out. `built_by`: the engine's
    identity for the images' label, when the caller has it already.

    With `shared` (`--from-registry`), nothing but the named images is built: an ancestor a
    named image builds on is taken from the engine or pulled from the registry by its tree
    tag, and a named image the registry already holds for this checkout is pulled (unless
    `force`) rather than built.
    """
    run = _Run(catalog, engine, builder, names, force, on_line, ensure_root, shared,
               platform or catalog.platforms[0],
               built_by if built_by is not None else str(engine.identity(builder)))
    outcomes: dict[str, Outcome] = {}
    for image in run.closure:
        outcome = Outcome(image.name, catalog.ref(image.name, platform=run.platform),
                          "building", platform=run.platform)
        outcomes[image.name] = outcome
        parent = outcomes.get(image.parent or "")
        if parent is not None and parent.status in ("failed", "skipped"):
            outcome.status, outcome.error = "skipped", f"parent {image.parent} did not build"
            on_status(outcome)
            continue
        on_status(outcome)
        started = time.monotonic()
        try:
            run.one(image, outcome)
        except ImagekitError as exc:
            outcome.status, outcome.error = "failed", redact(str(exc), run.hidden)
        except SERVICE_ERRORS as exc:
            # The engine's own error fails this image, in one line; the others go on.
            outcome.status = "failed"
            outcome.error = redact(f"{image.name}: the engine failed: {one_line(exc)}",
                                   run.hidden)
        outcome.seconds = round(time.monotonic() - started, 1)
        on_status(outcome)
    return list(outcomes.values())


class _Run:
    """One platform's builds: what every image of the run shares, and one image's work."""

    def __init__(self, catalog: Catalog, engine: Engine, builder: Builder, names: list[str],
                 force: bool, on_line: StepProgress, ensure_root: Callable[[], object],
                 shared: Shared | None, platform: Platform, built_by: str) -> None:
        self.catalog, self.engine, self.builder = catalog, engine, builder
        self.built_by = built_by
        self.force, self.on_line, self.shared, self.platform = force, on_line, shared, platform
        self.ensure_root, self.root_ready = ensure_root, False
        self.args = build_args(catalog)
        self.secrets = secrets(catalog)
        # A tool inside the build may echo a URL it was given: no credential reaches a log
        # line.
        self.hidden = secret_words(catalog.site)
        self.names = [n for n in names if platform in catalog.images[n].platforms]
        closure = catalog.closure(self.names)
        self.keys, self.contexts = tree_keys(catalog, closure, platform)
        self.fetched: set[str] = set()
        if shared is not None:
            unchanged = {n for n in self.names
                         if not force and shared.has(catalog.images[n], self.keys[n])}
            parents = {catalog.images[n].parent for n in self.names if n not in unchanged}
            self.fetched = unchanged | {p for p in parents
                                        if p is not None and p not in self.names}
            closure = [i for i in closure if i.name in self.names or i.name in self.fetched]
        self.closure = closure

    def line(self, image: str, text: str) -> None:
        self.on_line(image, redact(text, self.hidden))

    def one(self, image: Image, outcome: Outcome) -> None:
        if self.shared is not None and image.name in self.fetched:
            got, how = self.shared.fetch(image, self.keys[image.name])
            outcome.status, outcome.image_id, outcome.size = how, got.id, got.size
            outcome.tags, outcome.retagged = retag(self.catalog, self.engine, image, got,
                                                   self.platform)
            return
        if image.parent is None and not self.root_ready:
            self.ensure_root()
            self.root_ready = True
        build = plan_one(self.catalog, self.engine, self.builder.name, image,
                         self.contexts[image.name], self.keys[image.name], self.platform)
        if build.inputs is None:
            raise ImagekitError(f"{image.name}: parent image "
                                f"{self.catalog.parent_ref(image, self.platform)} is missing "
                                "(run `imagekit base`)")
        # --force rebuilds what was asked for; parents still come from the cache.
        forced = self.force and image.name in self.names
        existing = None if forced else cached(self.engine, build)
        if existing is not None:
            outcome.status, outcome.image_id, outcome.size = "cached", existing.id, existing.size
            outcome.tags, outcome.retagged = retag(self.catalog, self.engine, image, existing,
                                                   self.platform)
            return
        self.build(image, build, outcome)

    def build(self, image: Image, build: PlannedBuild, outcome: Outcome) -> None:
        first = self.platform == self.catalog.platforms[0] and native(self.platform)
        request = BuildRequest(
            image.name, build.context, build_labels(build, _now(), self.built_by), self.args,
            self.secrets,
            cache_from=tuple(self.shared.cache_from(image)) if self.shared else (),
            inline_cache=self.shared is not None,
            platform=None if first else self.platform)
        image_id = self.builder.build(request, functools.partial(self.line, image.name))
        outcome.tags = tag_image(self.catalog, self.engine, image, image_id, self.platform)
        info = self.engine.image(image_id)
        outcome.status, outcome.image_id = "built", image_id
        outcome.size = info.size if info else 0


def retag(catalog: Catalog, engine: Engine, image: Image, info: ImageInfo,
          platform: Platform | None = None) -> tuple[list[str], list[str]]:
    """Point every catalog and image tag at a cached image: (all its tags, the new ones).

    Its computed tags (versions, build date) stay as they are: they depend only on what is
    in the image, which has not changed.
    """
    repository = catalog.repository(image.name)
    tags = [t for t in info.tags if t.rpartition(":")[0] == repository]
    added = []
    for ref in (catalog.ref(image.name, tag, platform) for tag in image.tags):
        if ref not in tags:
            engine.tag(info.id, ref)
            tags.append(ref)
            added.append(ref)
    return tags, added


def tag_image(catalog: Catalog, engine: Engine, image: Image, image_id: str,
              platform: Platform | None = None) -> list[str]:
    """The catalog's tags plus tags computed by running commands in the built image."""
    tags = list(image.tags)
    outputs = engine.outputs_of(image_id, [t.run for t in image.stack.version_tags])
    for n, (version_tag, output) in enumerate(zip(image.stack.version_tags, outputs,
                                                  strict=True)):
        first = output.strip().splitlines()
        if not first:
            raise BuildFailed(f"{image.name}: version tag {version_tag.prefix}: "
                              f"`{version_tag.run}` printed nothing")
        if not looks_like_version(first[0].strip()):
            # A log line would give the image a new tag at every build.
            raise BuildFailed(f"{image.name}: {image.stack.file}: version_tags[{n}] "
                              f"({version_tag.prefix}): `{version_tag.run}` printed "
                              f"{first[0].strip()[:80]!r} first, which is not a version")
        tags.append(sanitize_tag(f"{version_tag.prefix}-{first[0].strip()}"))
    tags.append(_now().strftime("%Y-%m-%d"))
    refs = [catalog.ref(image.name, t, platform) for t in dict.fromkeys(tags)]
    for ref in refs:
        engine.tag(image_id, ref)
    return refs


_VERSION = re.compile(r"[vV]?[0-9]+(\.[0-9]+)*[0-9A-Za-z.+~-]*")


def looks_like_version(text: str) -> bool:
    """A tagger's answer: digits first (an optional v), dots, then letters, digits, `.+~-`
    (3.11.2, 2.1.0rc1, 1.0.0-beta.2); never a log line or a date-time."""
    return len(text) <= 64 and _VERSION.fullmatch(text) is not None


def sanitize_tag(text: str) -> str:
    tag = re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.")
    return tag[:128] or "unknown"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


class Display(Protocol):
    """How a run shows its progress: a live table on a terminal, log lines elsewhere."""

    def __enter__(self) -> Display: ...
    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None: ...
    def line(self, image: str, text: str) -> None: ...
    def status(self, outcome: Outcome) -> None: ...


@dataclass(frozen=True)
class BuildJob:
    """What `imagekit build` was asked for, as given: checked by `prepare`."""

    images: list[str]
    all_: bool = False
    formats: list[str] | None = None  # docker, sif; None: each image's catalog formats
    builder: str = "auto"
    force: bool = False
    sif_level: int | None = None  # None: the catalog's (sif.level), else its compression's
    sif_method: str = "auto"
    from_registry: bool = False
    platforms: list[str] | None = None  # None: the catalog's
    engine: str | None = None


@dataclass
class BuildReport:
    engine: Identity
    outcomes: list[Outcome] = field(default_factory=list)
    sifs: list[SifResult] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return any(o.status in ("failed", "skipped") for o in self.outcomes)

    def as_dict(self) -> dict[str, object]:
        return {"engine": asdict(self.engine), "images": [o.as_dict() for o in self.outcomes],
                "sif": [r.as_dict() for r in self.sifs]}

    def said(self) -> Said:
        """The build summary, a row per image and platform; exit 1 when one failed."""
        rows = [(o.image, o.status, human_size(o.size) if o.size else "-",
                 f"{o.seconds:.1f} s" if o.seconds else "-",
                 ", ".join(t.rpartition(":")[2] for t in o.tags)) for o in self.outcomes]
        return Said([Rows(("image", "status", "size", "time", "tags"), rows,
                          title="build summary")], data=self.as_dict(), code=int(self.failed))


@dataclass(frozen=True)
class Prepared:
    """A checked job: its images, platforms, engine and builder; nothing built yet."""

    catalog: Catalog
    job: BuildJob
    names: list[str]
    platforms: tuple[Platform, ...]
    engine: Engine
    builder: Builder

    @property
    def wants_sif(self) -> list[Image]:
        return [self.catalog.images[n] for n in self.names
                if "sif" in (self.job.formats or self.catalog.images[n].formats)]


def _check_options(job: BuildJob) -> None:
    for f in job.formats or []:
        if f not in ("docker", "sif"):
            raise ImagekitError(f"--format: {f!r} is not one of docker, sif")
    if job.sif_method not in ("auto", "native", "apptainer"):
        raise ImagekitError(f"--sif-method: {job.sif_method!r} is not auto, native or "
                            "apptainer")
    if job.builder not in ("auto", "buildkit", "classic", "podman"):
        raise ImagekitError(f"--builder: {job.builder!r} is not one of auto, buildkit, "
                            "classic, podman")


def _check_platforms(catalog: Catalog, job: BuildJob, selected: list[Image],
                     platforms: tuple[Platform, ...]) -> None:
    if job.platforms:
        for img in selected:
            if not any(p in img.platforms for p in platforms):
                raise ImagekitError(f"{img.name} is not built for {', '.join(platforms)} "
                                    f"({catalog.file.name}: its platforms are "
                                    f"{', '.join(img.platforms)})")
    if job.from_registry and platforms != catalog.platforms[:1]:
        raise ImagekitError("--from-registry: CI runners share the catalog's first "
                            f"platform ({catalog.platforms[0]}) only, so far: build the "
                            "others without it")


def prepare(catalog: Catalog, job: BuildJob) -> Prepared:
    """Every check a build makes before it starts (bad input: nothing is built)."""
    from imagekit import lock
    from imagekit.attest.signing import sif_key
    from imagekit.engine.choice import connect

    _check_options(job)
    selected = catalog.select(job.images, job.all_)
    platforms = catalog.choose_platforms(job.platforms)
    _check_platforms(catalog, job, selected, platforms)
    names = [i.name for i in selected]
    if any("sif" in (job.formats or i.formats) for i in selected):
        from imagekit.sif import check_runtime_reads, compression, runtime_tool

        # A level the compression lacks, or zstd for a runtime that cannot run it: said first.
        comp, _ = compression(catalog, job.sif_level)
        if job.sif_method != "native":
            check_runtime_reads(comp, runtime_tool())
        sif_key()  # a signing key set but unusable: said before anything is built
    stale = lock.stale_locks(catalog, names)
    if stale:
        raise ImagekitError(stale)
    engine = connect(catalog, job.engine)
    chosen = engine.builder(job.builder)
    check_builder(catalog, chosen)
    return Prepared(catalog, job, names, platforms, engine, chosen)


def dry_run_all(ready: Prepared) -> Said:
    """`build --dry-run`: what each platform would build, and what is cached; printed as the
    builder, then each build in order."""
    planned = [o for p in ready.platforms
               for o in dry_run(ready.catalog, ready.engine, ready.builder, ready.names, p)]
    lines = [f"builder: {ready.builder.description}"]
    for n, o in enumerate(planned, 1):
        parent = ready.catalog.images[o.image].parent or ready.catalog.base_ref(o.platform)
        where = f" [{o.platform}]" if len(ready.platforms) > 1 else ""
        lines.append(f"{n:2}. {o.image:<16} FROM {parent:<24} {o.status}{where}")
    return Said(lines, data=[o.as_dict() for o in planned])


def build_images(ready: Prepared, say: Callable[[str], None],
                 display: Callable[[list[str]], Display], shared: Shared | None = None
                 ) -> BuildReport:
    """The build step's door: each platform's images, parents first, then their SIFs.

    A platform this machine cannot run (no emulation) is said, and its images fail as
    skipped; what it can build is built. `shared`: a CI runner's builds
    (`publish.shared.build_from_registry`).
    """
    from imagekit.engine.base import ensure_base
    from imagekit.engine.emulation import unable

    catalog, job, engine = ready.catalog, ready.job, ready.engine
    say(f"builder: {ready.builder.description}")
    report = BuildReport(engine.identity(ready.builder))
    for p in ready.platforms:
        wanted = [n for n in ready.names if p in catalog.images[n].platforms]
        if not wanted:
            continue
        why = unable(p)
        if why is not None:
            say(f"{p}: not built: {why}")
            report.outcomes += [Outcome(n, catalog.ref(n, platform=p), "skipped", error=why,
                                        platform=p) for n in wanted]
            continue
        if len(ready.platforms) > 1:
            say(f"{p}:")
        if not job.from_registry:
            ensure_base(catalog, engine, say, platform=p)
        shown = display([i.name for i in catalog.closure(wanted)])
        with shown:
            done = run_builds(
                catalog, engine, ready.builder, wanted, force=job.force, on_line=shown.line,
                on_status=shown.status, shared=shared, platform=p, built_by=str(report.engine),
                ensure_root=functools.partial(ensure_base, catalog, engine, say, platform=p))
        report.outcomes += done
        report.sifs += _sifs(ready, done, p, say)
    return report


def _sifs(ready: Prepared, done: list[Outcome], platform: Platform,
          say: Callable[[str], None]) -> list[SifResult]:
    """The SIFs of the images this platform's builds gave (built, cached or fetched)."""
    from imagekit.sif import build_sif

    ok = {o.image for o in done if o.status in ("built", "cached", "pulled", "present")}
    results = []
    for image in ready.wants_sif:
        if image.name not in ok:
            continue
        say(f"[{image.name}] converting to SIF")
        result = build_sif(ready.catalog, ready.engine, image, level=ready.job.sif_level,
                           force=ready.job.force, method=ready.job.sif_method,
                           platform=platform)
        say(f"[{image.name}] {result.status} {result.path} ({result.method}, "
            f"{human_size(result.size)}, {result.total_s} s)")
        results.append(result)
    return results
