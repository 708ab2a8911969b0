"""`imagekit publish`: tested images and their SIFs to the registry, then the catalog.

The order is what keeps a failure harmless: everything is checked before the first push;
images and SIFs are pushed (a rerun sends only what the registry lacks); the new catalog is
composed from the digests the registry answered with and from the catalog published before
(read back from the registry, so any machine starts from the same history); the exports are
derived from it; the catalog artifact is pushed; only then are dist/catalog.json and
dist/exports/ replaced. A failure anywhere before that last step leaves both as they were.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from imagekit.checks import record
from imagekit.engine.client import Engine, ImageInfo
from imagekit.errors import BuildFailed, ImagekitError, Problem
from imagekit.exports import ExportFile, export_all
from imagekit.model import Catalog, Image
from imagekit.publish.catalog import (
    LeftOut,
    Previous,
    PublishedCatalog,
    PublishedImage,
    Resources,
    Sif,
    TestSummary,
    parse,
)
from imagekit.publish.packages import read_packages
from imagekit.publish.registry import (
    CATALOG_CONFIG_TYPE,
    CATALOG_LAYER_TYPE,
    SIF_CONFIG_TYPE,
    SIF_LAYER_TYPE,
    Pushed,
    Registry,
)
from imagekit.sif import read_sidecar, sif_path

Log = Callable[[str], None]
CATALOG_REPOSITORY, CATALOG_TAG = "catalog", "latest"
EPOCH = "1970-01-01T00:00:00Z"
UNTESTED = "untested-"  # the one tag of an image published with --skip-tests
IMMUTABLE = "id-"  # the tag named for a tested image's ID; moving tags follow it


@dataclass(frozen=True)
class Candidate:
    image: Image
    info: ImageInfo
    tested: record.TestRecord | None  # None: published with --skip-tests
    sif: Path | None


@dataclass
class ImageReport:
    image: str
    reference: str
    tags: list[str]
    tested: str
    sent: int
    size: int
    seconds: float
    sif_reference: str = ""
    sif_sent: int = 0


@dataclass
class PublishReport:
    images: list[ImageReport] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)
    catalog: str = ""
    catalog_digest: str = ""
    exports: list[str] = field(default_factory=list)
    sent: int = 0
    changed: bool = False
    seconds: float = 0.0

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def publish(catalog: Catalog, engine: Engine, names: list[str] | None, *, skip_tests: bool,
            log: Log) -> PublishReport:
    """Publish the named images (None: every listed image built here) and the catalog."""
    started = time.monotonic()
    registry = Registry(catalog)
    candidates = _preflight(catalog, engine, names, skip_tests)
    registry.check()
    previous = _previous(catalog, registry)
    report = PublishReport()
    entries: dict[str, PublishedImage] = {}
    for candidate in candidates:
        entry, line = _publish_one(catalog, engine, registry, candidate,
                                   _entry_of(previous, candidate.image.name), log)
        entries[candidate.image.name] = entry
        report.images.append(line)
    new = compose(catalog, previous, entries, log)
    exports = export_all(new)
    text = new.to_json()
    pushed = _push_catalog(catalog, registry, new, text)
    report.sent = sum(i.sent + i.sif_sent for i in report.images) + pushed.sent
    dist = catalog.dist
    report.changed = not _same(dist, text, exports)
    if report.changed:
        write_dist(dist, text, exports)
    report.catalog = str(dist / "catalog.json")
    report.catalog_digest = pushed.reference
    report.exports = [str(dist / "exports" / f.name) for f in exports]
    report.left_out = [f"{lo.name}: {lo.reason}" for lo in new.left_out]
    report.seconds = round(time.monotonic() - started, 1)
    return report


# -- before anything is pushed --

def _preflight(catalog: Catalog, engine: Engine, names: list[str] | None,
               skip_tests: bool) -> list[Candidate]:
    """Everything to push, checked first; images not built are left out under --all only."""
    explicit = names is not None
    wanted = [catalog.images[n] for n in names] if names is not None else [
        i for i in catalog.images.values() if i.listed and i.publish]
    problems: list[Problem] = []
    candidates: list[Candidate] = []
    for image in wanted:
        field_ = f"images.{image.name}"
        if not image.publish:
            problems.append(Problem(catalog.file, field_, "publish: false in the catalog"))
            continue
        if "docker" not in image.formats:
            problems.append(Problem(catalog.file, field_, "has no docker format to publish"))
            continue
        info = engine.image(catalog.ref(image.name))
        if info is None:
            if explicit:
                problems.append(Problem(catalog.file, field_, "is not built here (run "
                                                              f"`imagekit build {image.name}`)"))
            continue
        tested = record.load(catalog, info.id)
        if not skip_tests and (tested is None or not tested.ok):
            why = ("was not tested" if tested is None
                   else f"failed {tested.failed} of {tested.passed + tested.failed} checks")
            problems.append(Problem(catalog.file, field_, f"image {info.id[:19]} {why}: run "
                                    f"`imagekit test {image.name}` (or publish with "
                                    "--skip-tests)"))
            continue
        sif = None
        if "sif" in image.formats:
            sif = sif_path(catalog, image)
            made_from = (read_sidecar(sif) or {}).get("image_id") if sif.is_file() else None
            if made_from != info.id:
                problems.append(Problem(catalog.file, field_, f"{sif.name} is missing or was "
                                        f"made from another image: run `imagekit build "
                                        f"{image.name} --format sif`"))
                continue
        candidates.append(Candidate(image, info, tested if tested and tested.ok else None, sif))
    if problems:
        raise ImagekitError(problems)
    if not candidates:
        raise ImagekitError("nothing to publish: no listed image is built here")
    return candidates


def _previous(catalog: Catalog, registry: Registry) -> PublishedCatalog | None:
    repository = catalog.repository(CATALOG_REPOSITORY)
    data = registry.pull_artifact(repository, CATALOG_TAG, CATALOG_LAYER_TYPE)
    return None if data is None else parse(data.decode(), f"{repository}:{CATALOG_TAG}")


def _entry_of(previous: PublishedCatalog | None, name: str) -> PublishedImage | None:
    if previous is None:
        return None
    try:
        return previous.image(name)
    except KeyError:
        return None


# -- pushing --

def _tags(catalog: Catalog, candidate: Candidate) -> tuple[str, list[str]]:
    """(the immutable tag named for the image ID, the moving tags it is published under)."""
    short = candidate.info.id.removeprefix("sha256:")[:12]
    if candidate.tested is None:
        return f"{UNTESTED}{short}", []  # no moving tag ever points at an untested image
    prefix = catalog.repository(candidate.image.name) + ":"
    local = [t[len(prefix):] for t in candidate.info.tags if t.startswith(prefix)
             and not t[len(prefix):].startswith((UNTESTED, IMMUTABLE))]
    first = [t for t in candidate.image.tags if t in local]
    return f"{IMMUTABLE}{short}", first + sorted(t for t in local if t not in first)


def _publish_one(catalog: Catalog, engine: Engine, registry: Registry, candidate: Candidate,
                 before: PublishedImage | None, log: Log) -> tuple[PublishedImage, ImageReport]:
    image, info = candidate.image, candidate.info
    packages = read_packages(engine, info.id, image.runtime.venv)
    immutable, moving = _tags(catalog, candidate)
    tags = [*moving, immutable]
    log(f"[{image.name}] pushing {catalog.repository(image.name)} ({', '.join(tags)})")
    pushed = registry.push_image(engine, info.id, catalog.repository(image.name), immutable,
                                 moving)
    log(f"[{image.name}] pushed {pushed.reference} ({_mb(pushed.sent)} sent, "
        f"{pushed.seconds} s)")
    sif: Sif | None = None
    sif_pushed: Pushed | None = None
    if candidate.sif is not None:
        created = info.labels.get("org.opencontainers.image.created", EPOCH)
        sif_pushed = registry.push_artifact(catalog.sif_repository(image.name), tags,
                                            candidate.sif, SIF_LAYER_TYPE, SIF_CONFIG_TYPE,
                                            created)
        sif = Sif(
            reference=f"oras://{sif_pushed.reference}",
            repository=sif_pushed.repository,
            digest=sif_pushed.digest,
            sha256=sif_pushed.content.removeprefix("sha256:"),
            size=sif_pushed.size,
            filename=candidate.sif.name,
            tags=tags,
            # Named by content in the shared directory: a file name that a later conversion
            # overwrites would be a moving tag.
            path=(f"{catalog.sif_directory.rstrip('/')}/{image.name}_"
                  f"{sif_pushed.content.removeprefix('sha256:')[:12]}.sif"
                  if catalog.sif_directory else None),
        )
        log(f"[{image.name}] pushed SIF {sif.reference} ({_mb(sif_pushed.sent)} sent, "
            f"{sif_pushed.seconds} s)")
    tested = candidate.tested
    summary = (TestSummary(status="passed", passed=tested.passed, failed=tested.failed,
                           checks=tested.checks, tested_at=tested.tested_at)
               if tested is not None else TestSummary(status="skipped"))
    entry = PublishedImage(
        **_metadata(catalog, image, default=False),
        repository=pushed.repository,
        digest=pushed.digest,
        reference=pushed.reference,
        image_id=info.id,
        tags=tags,
        size=pushed.size,
        tested=summary,
        sif=sif,
        packages=packages,
        history=history(before, pushed.digest),
    )
    line = ImageReport(image.name, pushed.reference, tags, summary.status, pushed.sent,
                       pushed.size, pushed.seconds,
                       sif.reference if sif else "", sif_pushed.sent if sif_pushed else 0)
    return entry, line


def _metadata(catalog: Catalog, image: Image, *, default: bool) -> dict[str, object]:
    """What the catalog says of an image, apart from what the registry holds."""
    return {
        "name": image.name,
        "stack": image.stack.name,
        "parent": image.parent,
        "profiles": [p.name for p in image.profiles],
        "type": image.runtime.type,
        "gpu": image.runtime.gpu,
        "description": image.description,
        "default": default,
        "consumers": list(image.consumers),
        "resources": Resources(cpu=image.resources.cpu, memory=image.resources.memory,
                               gpus=image.resources.gpus),
        "port": image.runtime.port,
        "binds": list(image.binds),
    }


def history(before: PublishedImage | None, digest: str) -> list[Previous]:
    if before is None:
        return []
    older = list(before.history)
    if before.digest != digest:
        older.insert(0, Previous(digest=before.digest, reference=before.reference,
                                 tags=before.tags))
    seen: set[str] = {digest}
    kept = []
    for entry in older:
        if entry.digest not in seen:
            seen.add(entry.digest)
            kept.append(entry)
    # Kept whole: Kubeflow's webhook refuses dropping a WorkspaceKind value still in use.
    return kept


def _push_catalog(catalog: Catalog, registry: Registry, new: PublishedCatalog,
                  text: str) -> Pushed:
    stamps = [i.tested.tested_at for i in new.images if i.tested.tested_at]
    with tempfile.TemporaryDirectory(prefix="imagekit-catalog-") as tmp:
        path = Path(tmp) / "catalog.json"
        path.write_text(text)
        return registry.push_artifact(
            catalog.repository(CATALOG_REPOSITORY), [CATALOG_TAG],
            path, CATALOG_LAYER_TYPE, CATALOG_CONFIG_TYPE, max(stamps, default=EPOCH))


# -- the catalog --

def compose(catalog: Catalog, previous: PublishedCatalog | None,
            fresh: dict[str, PublishedImage], log: Log) -> PublishedCatalog:
    """The new published catalog: fresh entries, and the earlier entries of images not
    published this time with their catalog metadata brought up to date."""
    entries: list[PublishedImage] = []
    left_out: list[LeftOut] = []
    for image in catalog.images.values():
        if not image.listed or not image.publish:
            continue
        entry = fresh.get(image.name) or _entry_of(previous, image.name)
        if entry is None:
            left_out.append(LeftOut(name=image.name, reason="never published"))
            continue
        if image.name not in fresh:
            entry = entry.model_copy(update=_metadata(catalog, image, default=False))
        entries.append(entry)
    defaults: dict[str, str] = {}
    for ntype in ("jupyter", "code-server", "rstudio"):
        of_type = [e.name for e in entries if e.type == ntype]
        if not of_type:
            log(f"warning: no {ntype} image is published; the exports leave the group out")
            continue
        wanted = catalog.defaults.get(ntype)
        defaults[ntype] = wanted if wanted in of_type else of_type[0]
        if wanted and wanted not in of_type:
            log(f"warning: default {ntype} image {wanted} is not published; "
                f"{of_type[0]} is the default")
    entries = [e.model_copy(update={"default": defaults.get(e.type) == e.name})
               for e in entries]
    if left_out:
        log("warning: left out of the catalog and the exports, never published: "
            + ", ".join(lo.name for lo in left_out))
    return PublishedCatalog(
        registry=catalog.registry,
        namespace=catalog.namespace,
        registry_insecure=catalog.insecure_registry,
        vendor=catalog.vendor,
        source=catalog.source,
        sif_directory=catalog.sif_directory,
        defaults=defaults,
        images=entries,
        left_out=left_out,
    )


# -- dist/ --

def _same(dist: Path, text: str, exports: list[ExportFile]) -> bool:
    current = dist / "catalog.json"
    if not current.is_file() or current.read_text() != text:
        return False
    folder = dist / "exports"
    names = {f.name for f in exports}
    on_disk = {p.name for p in folder.iterdir()} if folder.is_dir() else set()
    return on_disk == names and all((folder / f.name).read_text() == f.text for f in exports)


def write_dist(dist: Path, text: str, exports: list[ExportFile]) -> None:
    """Replace dist/catalog.json and dist/exports/ by renames: never a half-written file."""
    dist.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".publish-", dir=dist))
    try:
        (stage / "exports").mkdir()
        for f in exports:
            (stage / "exports" / f.name).write_text(f.text)
        (stage / "catalog.json").write_text(text)
        target = dist / "exports"
        if target.exists():
            target.rename(stage / "exports.old")
        (stage / "exports").rename(target)
        (stage / "catalog.json").replace(dist / "catalog.json")
    except OSError as exc:  # a full disk: the old files stay, the rerun converges
        raise BuildFailed(f"{dist}: cannot write the catalog and exports: "
                          f"{exc.strerror or exc}") from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"
