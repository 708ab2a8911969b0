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
from typing import Protocol

from imagekit import __version__
from imagekit.credentials import SiteUrl, redact, secret_words, site_urls
from imagekit.engine.builders import Builder, BuildRequest
from imagekit.engine.client import Engine, ImageInfo
from imagekit.engine.context import BuildContext, assemble
from imagekit.engine.emulation import native
from imagekit.errors import BuildFailed, ImagekitError
from imagekit.model import Catalog, Image
from imagekit.schema import Platform

CACHE_LABEL = "io.imagekit.cache-key"
TREE_LABEL = "io.imagekit.tree-key"  # the checkout's key of the image (TreeInputs)
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


def build_labels(build: PlannedBuild, created: dt.datetime) -> dict[str, str]:
    """The labels set at build time: the key, the time, and functions of the key's inputs.

    A label taken from anything else (a tag, say) would give images with equal keys
    different contents, and a cached image a stale label.
    """
    assert build.inputs is not None
    return {
        CACHE_LABEL: build.inputs.digest(),
        TREE_LABEL: build.tree_key,
        "io.imagekit.parent-digest": build.inputs.parent_id,
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
) -> list[Outcome]:
    """Build the named images and what they need, parents first, for one platform (default:
    the catalog's first): the images not built for it are left out.

    With `shared` (`--from-registry`), nothing but the named images is built: an ancestor a
    named image builds on is taken from the engine or pulled from the registry by its tree
    tag, and a named image the registry already holds for this checkout is pulled (unless
    `force`) rather than built.
    """
    outcomes: dict[str, Outcome] = {}
    args = build_args(catalog)
    build_secrets = secrets(catalog)
    # A tool inside the build may echo a URL it was given: no credential reaches a log line.
    hidden = secret_words(catalog.site)
    platform = platform or catalog.platforms[0]
    names = [n for n in names if platform in catalog.images[n].platforms]
    closure = catalog.closure(names)
    keys, contexts = tree_keys(catalog, closure, platform)
    fetched: set[str] = set()
    if shared is not None:
        unchanged = {n for n in names if not force and shared.has(catalog.images[n], keys[n])}
        parents = {catalog.images[n].parent for n in names if n not in unchanged}
        fetched = unchanged | {p for p in parents if p is not None and p not in names}
        closure = [i for i in closure if i.name in names or i.name in fetched]

    def line(image: str, text: str) -> None:
        on_line(image, redact(text, hidden))

    root_ready = False
    for image in closure:
        ref = catalog.ref(image.name, platform=platform)
        outcome = Outcome(image.name, ref, "building", platform=platform)
        outcomes[image.name] = outcome
        parent = outcomes.get(image.parent or "")
        if parent is not None and parent.status in ("failed", "skipped"):
            outcome.status, outcome.error = "skipped", f"parent {image.parent} did not build"
            on_status(outcome)
            continue
        on_status(outcome)
        started = time.monotonic()
        try:
            if shared is not None and image.name in fetched:
                got, how = shared.fetch(image, keys[image.name])
                outcome.status, outcome.image_id, outcome.size = how, got.id, got.size
                outcome.tags, outcome.retagged = retag(catalog, engine, image, got, platform)
            else:
                if image.parent is None and not root_ready:
                    ensure_root()
                    root_ready = True
                build = plan_one(catalog, engine, builder.name, image, contexts[image.name],
                                 keys[image.name], platform)
                if build.inputs is None:
                    raise ImagekitError(f"{image.name}: parent image "
                                        f"{catalog.parent_ref(image, platform)} is missing "
                                        "(run `imagekit base`)")
                # --force rebuilds what was asked for; parents still come from the cache.
                existing = None if force and image.name in names else cached(engine, build)
                if existing is not None:
                    outcome.status, outcome.image_id = "cached", existing.id
                    outcome.size = existing.size
                    outcome.tags, outcome.retagged = retag(catalog, engine, image, existing,
                                                           platform)
                else:
                    request = BuildRequest(
                        image.name, build.context, build_labels(build, _now()), args,
                        build_secrets,
                        cache_from=tuple(shared.cache_from(image)) if shared else (),
                        inline_cache=shared is not None,
                        platform=None if platform == catalog.platforms[0] and native(platform)
                        else platform)
                    image_id = builder.build(request, functools.partial(line, image.name))
                    outcome.tags = tag_image(catalog, engine, image, image_id, platform)
                    info = engine.image(image_id)
                    outcome.status, outcome.image_id = "built", image_id
                    outcome.size = info.size if info else 0
        except ImagekitError as exc:
            outcome.status, outcome.error = "failed", redact(str(exc), hidden)
        outcome.seconds = round(time.monotonic() - started, 1)
        on_status(outcome)
    return list(outcomes.values())


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
    for version_tag in image.stack.version_tags:
        first = engine.output_of(image_id, version_tag.run).strip().splitlines()
        if not first:
            raise BuildFailed(f"{image.name}: version tag {version_tag.prefix}: "
                              f"`{version_tag.run}` printed nothing")
        tags.append(sanitize_tag(f"{version_tag.prefix}-{first[0].strip()}"))
    tags.append(_now().strftime("%Y-%m-%d"))
    refs = [catalog.ref(image.name, t, platform) for t in dict.fromkeys(tags)]
    for ref in refs:
        engine.tag(image_id, ref)
    return refs


def sanitize_tag(text: str) -> str:
    tag = re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.")
    return tag[:128] or "unknown"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)
