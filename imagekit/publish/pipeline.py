"""`imagekit publish`: tested images and their SIFs to the registry, then the catalog.

The order is what keeps a failure harmless: everything is checked before the first push;
images and SIFs are pushed (a rerun sends only what the registry lacks); the new catalog is
composed from the digests the registry answered with and from the catalog published before
(read back from the registry, so any machine starts from the same history); the exports are
derived from it; the catalog artifact is pushed; only then are dist/catalog.json and
dist/exports/ replaced. A failure anywhere before that last step leaves both as they were.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from imagekit.checks import record
from imagekit.engine.client import Engine, ImageInfo
from imagekit.errors import BuildFailed, ImagekitError, Problem
from imagekit.exports import ExportFile, export_all
from imagekit.model import Catalog, Image, arch
from imagekit.publish.catalog import (
    LeftOut,
    PlatformImage,
    Previous,
    PublishedCatalog,
    PublishedImage,
    Resources,
    Sbom,
    Sif,
    Signature,
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
from imagekit.publish.sbom import MEDIA_TYPE as SBOM_TYPE
from imagekit.publish.sbom import make_sbom
from imagekit.publish.signing import cosign_key, public_key_sha256, sign_image
from imagekit.schema import Platform
from imagekit.sif import read_sidecar, sif_path
from imagekit.site.build import write_site

Log = Callable[[str], None]
CATALOG_REPOSITORY, CATALOG_TAG = "catalog", "latest"
HISTORY = "history-"  # the tag of each catalog published, numbered
TEST_RECORD_TYPE = "application/vnd.imagekit.test-record.v1+json"
EPOCH = "1970-01-01T00:00:00Z"
UNTESTED = "untested-"  # the one tag of an image published with --skip-tests
IMMUTABLE = "id-"  # the tag named for a tested image's ID; moving tags follow it
INDEX = "index-"  # after id- or untested-: the tag named for a multi-architecture index


@dataclass(frozen=True)
class Candidate:
    image: Image
    info: ImageInfo
    tested: record.TestRecord | None  # None: published with --skip-tests
    sif: Path | None
    signing_key: Path | None = None  # the site's cosign key: the image is signed
    platform: Platform = "linux/amd64"


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
    candidates = preflight(catalog, engine, names, skip_tests)
    registry.check()
    previous = previous_catalog(catalog, registry)
    report = PublishReport()
    entries: dict[str, PublishedImage] = {}
    for group in by_image(candidates):
        name = group[0].image.name
        if len(group) == 1 and len(catalog.platforms) == 1:
            entry, line = publish_one(catalog, engine, registry, group[0],
                                      entry_of(previous, name), log)
        else:
            entry, line = publish_platforms(catalog, engine, registry, group,
                                            entry_of(previous, name), log)
        entries[name] = entry
        report.images.append(line)
    return finish(catalog, registry, previous, entries, report, started, log)


def by_image(candidates: list[Candidate]) -> list[list[Candidate]]:
    """The candidates of each image together, its platforms in the catalog's order."""
    groups: dict[str, list[Candidate]] = {}
    for candidate in candidates:
        groups.setdefault(candidate.image.name, []).append(candidate)
    return list(groups.values())


def reinstate(catalog: Catalog, registry: Registry, previous: PublishedCatalog | None,
              found: dict[str, PublishedImage], started: float, log: Log,
              how: str) -> PublishReport:
    """Publish entries whose images the registry already holds (a runner's push, an earlier
    catalog's): their tags moved to them through the registry API, nothing pulled or sent,
    then the catalog, exports and site as `publish` writes them."""
    report = PublishReport()
    entries: dict[str, PublishedImage] = {}
    for name, entry in found.items():
        moved = time.monotonic()
        moving = [t for t in entry.tags if not t.startswith(IMMUTABLE)]
        registry.retag(entry.repository, entry.digest, moving)
        if entry.sif is not None:
            registry.retag(entry.sif.repository, entry.sif.digest, moving)
        log(f"[{name}] {how}: {', '.join(moving)} -> {entry.reference}")
        entries[name] = entry.model_copy(update={
            **catalog_metadata(catalog, catalog.images[name], default=False),
            "history": history(entry_of(previous, name), entry.digest)})
        report.images.append(ImageReport(
            name, entry.reference, entry.tags, entry.tested.status, 0, entry.size,
            round(time.monotonic() - moved, 1), entry.sif.reference if entry.sif else ""))
    return finish(catalog, registry, previous, entries, report, started, log)


def finish(catalog: Catalog, registry: Registry, previous: PublishedCatalog | None,
           entries: dict[str, PublishedImage], report: PublishReport, started: float,
           log: Log) -> PublishReport:
    """The catalog from the fresh entries and the previous catalog, its exports, the
    catalog artifact pushed, and only then dist/ replaced."""
    new = compose(catalog, previous, entries, log)
    exports = export_all(new)
    text = new.to_json()
    pushed = _push_catalog(catalog, registry, new, text)
    report.sent = sum(i.sent + i.sif_sent for i in report.images) + pushed.sent
    dist = catalog.dist
    sboms = _sboms(registry, new, dist)
    report.changed = not _same(dist, text, exports, sboms)
    if report.changed:
        write_dist(dist, text, exports, sboms)
    if report.changed or not (dist / "site" / "index.html").is_file():
        write_site(new, dist / "site")  # people read it: it follows the catalog
    report.catalog = str(dist / "catalog.json")
    report.catalog_digest = pushed.reference
    report.exports = [str(dist / "exports" / f.name) for f in exports]
    report.left_out = [f"{lo.name}: {lo.reason}" for lo in new.left_out]
    report.seconds = round(time.monotonic() - started, 1)
    return report


# -- before anything is pushed --

def preflight(catalog: Catalog, engine: Engine, names: list[str] | None,
               skip_tests: bool) -> list[Candidate]:
    """Everything to push, checked first; images not built are left out under --all only."""
    explicit = names is not None
    wanted = [catalog.images[n] for n in names] if names is not None else [
        i for i in catalog.images.values() if i.listed and i.publish]
    problems: list[Problem] = []
    candidates: list[Candidate] = []
    key = cosign_key()  # a key set but unusable is said before anything is pushed
    for image in wanted:
        field_ = f"images.{image.name}"
        if not image.publish:
            problems.append(Problem(catalog.file, field_, "publish: false in the catalog"))
            continue
        if "docker" not in image.formats:
            problems.append(Problem(catalog.file, field_, "has no docker format to publish"))
            continue
        platforms = [p for p in catalog.platforms if p in image.platforms]
        infos = {p: engine.image(catalog.ref(image.name, platform=p)) for p in platforms}
        missing = [p for p, info in infos.items() if info is None]
        if missing:
            if explicit or len(missing) < len(platforms):
                on = f" for {', '.join(missing)}" if len(platforms) > 1 else ""
                flag = "".join(f" --platform {p}" for p in missing) if len(platforms) > 1 else ""
                problems.append(Problem(catalog.file, field_, f"is not built here{on} (run "
                                        f"`imagekit build {image.name}{flag}`)"))
            continue
        for platform in platforms:
            info = infos[platform]
            assert info is not None
            on = f" ({platform})" if len(platforms) > 1 else ""
            tested = record.load(catalog, info.id)
            if not skip_tests and (tested is None or not tested.ok):
                why = ("was not tested" if tested is None
                       else f"failed {tested.failed} of {tested.passed + tested.failed} checks")
                flag = f" --platform {platform}" if len(platforms) > 1 else ""
                problems.append(Problem(catalog.file, field_, f"image {info.id[:19]}{on} {why}:"
                                        f" run `imagekit test {image.name}{flag}` (or publish "
                                        "with --skip-tests)"))
                continue
            sif = None
            if "sif" in image.formats:
                sif = sif_path(catalog, image, platform=platform)
                made_from = (read_sidecar(sif) or {}).get("image_id") if sif.is_file() else None
                if made_from != info.id:
                    flag = f" --platform {platform}" if len(platforms) > 1 else ""
                    problems.append(Problem(catalog.file, field_, f"{sif.name} is missing or "
                                            f"was made from another image: run `imagekit "
                                            f"build {image.name}{flag} --format sif`"))
                    continue
            candidates.append(Candidate(image, info, tested if tested and tested.ok else None,
                                        sif, key, platform))
    if problems:
        raise ImagekitError(problems)
    if not candidates:
        raise ImagekitError("nothing to publish: no listed image is built here")
    return candidates


def previous_catalog(catalog: Catalog, registry: Registry) -> PublishedCatalog | None:
    repository = catalog.repository(CATALOG_REPOSITORY)
    data = registry.pull_artifact(repository, CATALOG_TAG, CATALOG_LAYER_TYPE)
    return None if data is None else parse(data.decode(), f"{repository}:{CATALOG_TAG}")


def entry_of(previous: PublishedCatalog | None, name: str) -> PublishedImage | None:
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
    suffix = catalog.suffix(candidate.platform)  # scipy:latest-arm64 is published as latest
    local = [t[len(prefix):].removesuffix(suffix) for t in candidate.info.tags
             if t.startswith(prefix) and t.endswith(suffix)
             and not t[len(prefix):].startswith((UNTESTED, IMMUTABLE))]
    first = [t for t in candidate.image.tags if t in local]
    return f"{IMMUTABLE}{short}", first + sorted(t for t in local if t not in first)


def publish_one(catalog: Catalog, engine: Engine, registry: Registry, candidate: Candidate,
                before: PublishedImage | None, log: Log, *,
                registry_tags: list[str] | None = None) -> tuple[PublishedImage, ImageReport]:
    """Push one image and its SIF; the entry the catalog gets for it.

    `registry_tags`: push under the immutable tag and these (a CI runner's tree tag) instead
    of the moving tags, which `publish --from-registry` moves later; the entry still names
    the tags the image is published under."""
    image, info = candidate.image, candidate.info
    packages = read_packages(engine, info.id, image.runtime.venv)
    immutable, moving = _tags(catalog, candidate)
    tags = [*moving, immutable]
    pushed_tags = tags if registry_tags is None else [*registry_tags, immutable]
    log(f"[{image.name}] pushing {catalog.repository(image.name)} ({', '.join(pushed_tags)})")
    pushed = registry.push_image(engine, info.id, catalog.repository(image.name), immutable,
                                 pushed_tags[:-1])
    log(f"[{image.name}] pushed {pushed.reference} ({_mb(pushed.sent)} sent, "
        f"{pushed.seconds} s)")
    created = info.labels.get("org.opencontainers.image.created", EPOCH)
    sif: Sif | None = None
    sif_pushed: Pushed | None = None
    if candidate.sif is not None:
        sif_pushed = registry.push_artifact(catalog.sif_repository(image.name), pushed_tags,
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
            signed_by=(read_sidecar(candidate.sif) or {}).get("signed_by") or None,
        )
        log(f"[{image.name}] pushed SIF {sif.reference} ({_mb(sif_pushed.sent)} sent, "
            f"{sif_pushed.seconds} s)")
    sbom_text = make_sbom(image.name, info.id, pushed.repository, packages,
                          architecture=info.architecture, created=created)
    sbom_pushed = registry.push_referrer(pushed.repository, pushed.digest, sbom_text.encode(),
                                         SBOM_TYPE, f"{image.name}.cdx.json", created)
    sbom = Sbom(reference=f"{pushed.repository}@{sbom_pushed.digest}",
                digest=sbom_pushed.digest, sha256=sbom_pushed.content.removeprefix("sha256:"),
                media_type=SBOM_TYPE, path=f"sbom/{image.name}.cdx.json")
    log(f"[{image.name}] pushed its SBOM {sbom.reference} (refers to {pushed.digest[:19]}…)")
    signature = _sign(catalog, registry, image, pushed.reference, candidate.signing_key, log)
    tested = candidate.tested
    summary = TestSummary(status="skipped")
    if tested is not None:
        kept = registry.push_referrer(pushed.repository, pushed.digest,
                                      (json.dumps(asdict(tested), indent=2, sort_keys=True)
                                       + "\n").encode(),
                                      TEST_RECORD_TYPE, f"{image.name}.test.json", created)
        summary = TestSummary(status="passed", passed=tested.passed, failed=tested.failed,
                              checks=tested.checks, tested_at=tested.tested_at,
                              record=kept.digest)
    entry = PublishedImage(
        **catalog_metadata(catalog, image, default=False),
        repository=pushed.repository,
        digest=pushed.digest,
        reference=pushed.reference,
        image_id=info.id,
        tags=tags,
        size=pushed.size,
        tested=summary,
        sif=sif,
        packages=packages,
        sbom=sbom,
        signature=signature,
        history=history(before, pushed.digest),
    )
    line = ImageReport(image.name, pushed.reference, tags, summary.status, pushed.sent,
                       pushed.size, pushed.seconds,
                       sif.reference if sif else "", sif_pushed.sent if sif_pushed else 0)
    return entry, line


def publish_platforms(catalog: Catalog, engine: Engine, registry: Registry,
                      candidates: list[Candidate], before: PublishedImage | None,
                      log: Log) -> tuple[PublishedImage, ImageReport]:
    """Push each architecture's image, SIF, SBOM and test record under its own immutable
    tag, then one index of the images and one of the SIFs, sign the index, and only then
    move the tags to both: `docker pull` and `apptainer pull` on either architecture take
    their own from one reference. In a catalog of several platforms an image built for one
    is an index of one, so its entry says which architecture it has."""
    started = time.monotonic()
    first = candidates[0]
    image = first.image
    pushed: list[tuple[Candidate, PublishedImage, ImageReport]] = []
    for candidate in candidates:
        log(f"[{image.name}] {candidate.platform}")
        entry, line = publish_one(catalog, engine, registry, replace(candidate, signing_key=None),
                                  None, log, registry_tags=[])
        pushed.append((candidate, entry, line))
    untested = [c for c in candidates if c.tested is None]
    # One untested member makes the index untested: no moving tag, and "skipped".
    immutable, moving = _tags(catalog, untested[0] if untested else first)
    repository = catalog.repository(image.name)
    index = registry.push_index(repository, [(c.platform, e.digest) for c, e, _ in pushed], [])
    kind = immutable.partition("-")[0] + "-"  # id- or untested-
    index_tag = f"{kind}{INDEX}{index.digest.removeprefix('sha256:')[:12]}"
    tags = [*moving, index_tag]
    head = pushed[0][1]
    sif = None
    sif_sent = 0
    sif_index = None
    if head.sif is not None:
        sif_repository = catalog.sif_repository(image.name)
        sifs = [(c.platform, e.sif.digest) for c, e, _ in pushed if e.sif is not None]
        sif_index = registry.push_index(sif_repository, sifs, [])
        # The file fields are the first platform's; a shared directory's path is per file,
        # so the index has none (each node pulls its own through the oras:// reference).
        sif = head.sif.model_copy(update={"reference": f"oras://{sif_index.reference}",
                                          "digest": sif_index.digest, "tags": tags,
                                          "path": None})
        sif_sent = sif_index.sent
    signature = _sign(catalog, registry, image, index.reference, first.signing_key, log)
    # Every member is in and the index is signed: now the tags move, the SIFs' first.
    if sif_index is not None:
        registry.retag(sif_index.repository, sif_index.digest, [index_tag, *moving])
        log(f"[{image.name}] pushed the SIF index oras://{sif_index.reference}")
    registry.retag(repository, index.digest, [index_tag, *moving])
    log(f"[{image.name}] pushed the index {index.reference} ("
        + ", ".join(f"{arch(c.platform)} {e.digest[:19]}…" for c, e, _ in pushed) + ")")
    platforms = [PlatformImage(platform=c.platform, digest=e.digest, reference=e.reference,
                               image_id=e.image_id, tags=e.tags[-1:], size=e.size,
                               tested=e.tested,
                               sif=e.sif.model_copy(update={"tags": e.sif.tags[-1:]})
                               if e.sif else None, sbom=e.sbom)
                 for c, e, _ in pushed]
    entry = head.model_copy(update={
        "digest": index.digest, "reference": index.reference, "tags": tags, "sif": sif,
        "signature": signature, "platforms": platforms,
        "tested": TestSummary(status="skipped") if untested else head.tested,
        "history": history(before, index.digest)})
    line = ImageReport(image.name, index.reference, tags, entry.tested.status,
                       sum(ln.sent for _, _, ln in pushed) + index.sent, head.size,
                       round(time.monotonic() - started, 1), sif.reference if sif else "",
                       sum(ln.sif_sent for _, _, ln in pushed) + sif_sent)
    return entry, line


def _sign(catalog: Catalog, registry: Registry, image: Image, reference: str,
          key: Path | None, log: Log) -> Signature | None:
    """Sign a pushed manifest (an image, or an index) with the site's cosign key, if any."""
    if key is None:
        return None
    sign_image(reference, key, insecure=catalog.insecure_registry,
               ca_bundle=catalog.site.ca_bundle, credentials=registry.credentials)
    log(f"[{image.name}] signed {reference} with cosign")
    return Signature(public_key_sha256=public_key_sha256(key))


def catalog_metadata(catalog: Catalog, image: Image, *, default: bool) -> dict[str, object]:
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
                                 tags=before.tags, members=before.members()))
    seen: set[str] = {digest}
    kept = []
    for entry in older:
        if entry.digest not in seen:
            seen.add(entry.digest)
            kept.append(entry)
    # Kept whole: Kubeflow's webhook refuses dropping a WorkspaceKind value still in use.
    return kept


def history_tags(registry: Registry, repository: str) -> list[str]:
    """The catalog's history tags, oldest first: one per catalog ever published."""
    return sorted(t for t in registry.tags(repository)
                  if t.startswith(HISTORY) and t[len(HISTORY):].isdigit())


def _push_catalog(catalog: Catalog, registry: Registry, new: PublishedCatalog,
                  text: str) -> Pushed:
    """The catalog under `latest` and under a history tag of its own (history-000042), so
    that a rollback (`publish --pin`) and retention (`prune --keep N`) can read the catalogs
    published before. Publishing the same catalog again adds no history."""
    stamps = [i.tested.tested_at for i in new.images if i.tested.tested_at]
    repository = catalog.repository(CATALOG_REPOSITORY)
    history = history_tags(registry, repository)
    sha = "sha256:" + hashlib.sha256(text.encode()).hexdigest()
    last = registry.manifest(repository, history[-1]) if history else None
    same = last is not None and any(layer.get("digest") == sha
                                    for layer in last[1].get("layers", []))
    tags = [CATALOG_TAG, history[-1] if same else
            f"{HISTORY}{int(history[-1][len(HISTORY):]) + 1 if history else 1:06d}"]
    with tempfile.TemporaryDirectory(prefix="imagekit-catalog-") as tmp:
        path = Path(tmp) / "catalog.json"
        path.write_text(text)
        return registry.push_artifact(repository, tags, path, CATALOG_LAYER_TYPE,
                                      CATALOG_CONFIG_TYPE, max(stamps, default=EPOCH))


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
        entry = fresh.get(image.name) or entry_of(previous, image.name)
        if entry is None:
            left_out.append(LeftOut(name=image.name, reason="never published"))
            continue
        if image.name not in fresh:
            entry = entry.model_copy(update=catalog_metadata(catalog, image, default=False))
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

def _sboms(registry: Registry, catalog: PublishedCatalog, dist: Path) -> list[ExportFile]:
    """Each image's SBOM document: the copy in dist/ when it is the one the catalog names,
    else read back from the registry (what consumers fetch)."""
    found = []
    for image in catalog.images:
        if image.sbom is None:
            continue
        local = dist / image.sbom.path
        data = local.read_bytes() if local.is_file() else b""
        if hashlib.sha256(data).hexdigest() != image.sbom.sha256:
            data = registry.blob(image.repository, f"sha256:{image.sbom.sha256}")
        if hashlib.sha256(data).hexdigest() != image.sbom.sha256:
            raise BuildFailed(f"{image.sbom.reference}: the SBOM does not match its digest")
        found.append(ExportFile(Path(image.sbom.path).name, data.decode()))
    return found


def _same(dist: Path, text: str, exports: list[ExportFile], sboms: list[ExportFile]) -> bool:
    current = dist / "catalog.json"
    if not current.is_file() or current.read_text() != text:
        return False
    for name, files in (("exports", exports), ("sbom", sboms)):
        folder = dist / name
        names = {f.name for f in files}
        on_disk = {p.name for p in folder.iterdir()} if folder.is_dir() else set()
        if on_disk != names or any((folder / f.name).read_text() != f.text for f in files):
            return False
    return True


def write_dist(dist: Path, text: str, exports: list[ExportFile],
               sboms: list[ExportFile] | None = None) -> None:
    """Replace dist/catalog.json, dist/exports/ and dist/sbom/ by renames: never a
    half-written file."""
    dist.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".publish-", dir=dist))
    try:
        folders = {"exports": exports, "sbom": sboms or []}
        for name, files in folders.items():
            if name == "exports" or files:
                (stage / name).mkdir()
            for f in files:
                (stage / name / f.name).write_text(f.text)
        (stage / "catalog.json").write_text(text)
        for name in folders:
            target = dist / name
            if target.exists():
                target.rename(stage / f"{name}.old")
            if (stage / name).is_dir():
                (stage / name).rename(target)
        (stage / "catalog.json").replace(dist / "catalog.json")
    except OSError as exc:  # a full disk: the old files stay, the rerun converges
        raise BuildFailed(f"{dist}: cannot write the catalog and exports: "
                          f"{exc.strerror or exc}") from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"
