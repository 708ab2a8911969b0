"""Plan and run image builds: parents first, each image once, unchanged ones not rebuilt.

The cache key of an image is the hash of its build context (rendered recipe, files, CA
bundle, wheels), its parent's image ID and the build arguments; it is recorded in the image
as a label, so "already built from identical inputs" is a question for the engine, not for a
state file. Tags are moved only after a build succeeded.
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

from imagekit import __version__
from imagekit.credentials import SiteUrl, redact, secret_words
from imagekit.engine.builders import Builder, BuildRequest
from imagekit.engine.client import Engine, ImageInfo
from imagekit.engine.context import BuildContext, assemble
from imagekit.errors import BuildFailed, ImagekitError
from imagekit.model import Catalog, Image

CACHE_LABEL = "io.imagekit.cache-key"

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

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class PlannedBuild:
    image: Image
    ref: str
    context: BuildContext
    parent: ImageInfo | None  # None: the parent is not built yet
    cache_key: str | None  # None: not knowable before the parent exists


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


def cache_key(context: BuildContext, parent_id: str, args: dict[str, str]) -> str:
    h = hashlib.sha256()
    h.update(context.digest().encode())
    h.update(parent_id.encode())
    h.update(json.dumps(args, sort_keys=True).encode())
    return h.hexdigest()


def plan_one(catalog: Catalog, engine: Engine, image: Image,
             args: dict[str, str]) -> PlannedBuild:
    context = assemble(catalog, image)
    parent = engine.image(catalog.parent_ref(image))
    key = cache_key(context, parent.id, args) if parent is not None else None
    return PlannedBuild(image, catalog.ref(image.name), context, parent, key)


def cached(engine: Engine, build: PlannedBuild) -> ImageInfo | None:
    """The engine's image for this build when it was built from identical inputs."""
    existing = engine.image(build.ref)
    if build.cache_key is None or existing is None:
        return None
    return existing if existing.labels.get(CACHE_LABEL) == build.cache_key else None


def dry_run(catalog: Catalog, engine: Engine, names: list[str]) -> list[Outcome]:
    args = build_args(catalog)
    outcomes = []
    for image in catalog.closure(names):
        build = plan_one(catalog, engine, image, args)
        status = "cached" if cached(engine, build) is not None else "planned"
        outcomes.append(Outcome(image.name, build.ref, status))
    return outcomes


def run_builds(
    catalog: Catalog,
    engine: Engine,
    builder: Builder,
    names: list[str],
    *,
    force: bool = False,
    on_line: StepProgress,
    on_status: Callable[[Outcome], None],
) -> list[Outcome]:
    outcomes: dict[str, Outcome] = {}
    args = build_args(catalog)
    build_secrets = secrets(catalog)
    # A tool inside the build may echo a URL it was given: no credential reaches a log line.
    hidden = secret_words(catalog.site)

    def line(image: str, text: str) -> None:
        on_line(image, redact(text, hidden))

    for image in catalog.closure(names):
        ref = catalog.ref(image.name)
        outcome = Outcome(image.name, ref, "building")
        outcomes[image.name] = outcome
        if image.parent is not None and outcomes[image.parent].status in ("failed", "skipped"):
            outcome.status, outcome.error = "skipped", f"parent {image.parent} did not build"
            on_status(outcome)
            continue
        on_status(outcome)
        started = time.monotonic()
        try:
            build = plan_one(catalog, engine, image, args)
            parent, key, context = build.parent, build.cache_key, build.context
            if parent is None or key is None:
                raise ImagekitError(f"{image.name}: parent image {catalog.parent_ref(image)} "
                                    "is missing (run `imagekit base`)")
            # --force rebuilds what was asked for; parents still come from the cache.
            existing = None if force and image.name in names else cached(engine, build)
            if existing is not None:
                outcome.status, outcome.image_id = "cached", existing.id
                outcome.size = existing.size
                outcome.tags = [t for t in existing.tags if t.startswith(ref.rpartition(":")[0])]
            else:
                labels = {
                    CACHE_LABEL: key,
                    "io.imagekit.parent-digest": parent.id,
                    "io.imagekit.recipe-hash": hashlib.sha256(
                        context.files["Dockerfile"]).hexdigest(),
                    "io.imagekit.version": __version__,
                    "org.opencontainers.image.created": _now().isoformat(),
                    "org.opencontainers.image.version": image.tags[0],
                }
                request = BuildRequest(image.name, context, labels, args, build_secrets)
                image_id = builder.build(request, functools.partial(line, image.name))
                outcome.tags = tag_image(catalog, engine, image, image_id)
                info = engine.image(image_id)
                outcome.status, outcome.image_id = "built", image_id
                outcome.size = info.size if info else 0
        except ImagekitError as exc:
            outcome.status, outcome.error = "failed", redact(str(exc), hidden)
        outcome.seconds = round(time.monotonic() - started, 1)
        on_status(outcome)
    return list(outcomes.values())


def tag_image(catalog: Catalog, engine: Engine, image: Image, image_id: str) -> list[str]:
    """The catalog's tags plus tags computed by running commands in the built image."""
    tags = list(image.tags)
    for version_tag in image.stack.version_tags:
        first = engine.output_of(image_id, version_tag.run).strip().splitlines()
        if not first:
            raise BuildFailed(f"{image.name}: version tag {version_tag.prefix}: "
                              f"`{version_tag.run}` printed nothing")
        tags.append(sanitize_tag(f"{version_tag.prefix}-{first[0].strip()}"))
    tags.append(_now().strftime("%Y-%m-%d"))
    refs = [catalog.ref(image.name, t) for t in dict.fromkeys(tags)]
    for ref in refs:
        engine.tag(image_id, ref)
    return refs


def sanitize_tag(text: str) -> str:
    tag = re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.")
    return tag[:128] or "unknown"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)
