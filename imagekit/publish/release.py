"""The release of a publication: the new published catalog composed from the fresh entries
and the catalog published before, its exports and SBOMs, the catalog artifact pushed (under
a history tag of its own, then `latest`), and only then dist/catalog.json, dist/exports/,
dist/sbom/ and the site replaced. `finish` does it after `publish` pushed images;
`reinstate` does it for entries the registry already holds (`publish --from-registry`,
`publish --pin`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import shutil
import tempfile
import time
from pathlib import Path

from imagekit.errors import BuildFailed
from imagekit.exports import ExportFile, export_all
from imagekit.model import Catalog, Image
from imagekit.publish.common import (
    CATALOG_REPOSITORY,
    CATALOG_TAG,
    CHANGED,
    EPOCH,
    HISTORY,
    IMMUTABLE,
    INCLUDES,
    UNTESTED,
    Base,
    ImageReport,
    Log,
    PublishReport,
    entry_of,
    history_tags,
)
from imagekit.publish.registry import CATALOG_CONFIG_TYPE, CATALOG_LAYER_TYPE, Pushed, Registry
from imagekit.published.catalog import (
    LeftOut,
    Previous,
    PublishedCatalog,
    PublishedImage,
    Resources,
    parse,
)
from imagekit.site.build import write_site


def reinstate(catalog: Catalog, registry: Registry, base: Base,
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
        if entry.sif is not None:  # the SIF's first, as publish moves them
            registry.retag(entry.sif.repository, entry.sif.digest, moving)
        registry.retag(entry.repository, entry.digest, moving)
        log(f"[{name}] {how}: {', '.join(moving)} -> {entry.reference}")
        entries[name] = entry.model_copy(update={
            **catalog_metadata(catalog, catalog.images[name], default=False),
            "history": history(entry_of(base.catalog, name), entry.digest)})
        report.images.append(ImageReport(
            name, entry.reference, entry.tags, entry.tested.status, 0, entry.size,
            round(time.monotonic() - moved, 1), entry.sif.reference if entry.sif else ""))
    return finish(catalog, registry, base, entries, report, started, log)


def finish(catalog: Catalog, registry: Registry, base: Base,
           entries: dict[str, PublishedImage], report: PublishReport, started: float,
           log: Log) -> PublishReport:
    """The catalog from the fresh entries and the previous catalog, the catalog artifact
    pushed (with what publications that landed meanwhile changed), its exports, and only
    then dist/ replaced."""
    new, pushed, sent = _push_catalog(catalog, registry, base, entries, log)
    exports = export_all(new)
    text = new.to_json()
    report.sent = sum(i.sent + i.sif_sent for i in report.images) + sent
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


FOLD_ROUNDS = 20  # publications landing one after another while this one writes `latest`
STAMP = 20  # digits of a history tag's time (UTC, to the µs); 6 random digits follow


def _push_catalog(catalog: Catalog, registry: Registry, base: Base,
                  entries: dict[str, PublishedImage],
                  log: Log) -> tuple[PublishedCatalog, Pushed, int]:
    """This publication's catalog under a history tag of its own, so that a rollback
    (`publish --pin`) and retention (`prune --keep N`) can read the catalogs published
    before; then under `latest`. Publishing the same catalog again adds no history.

    Publications can race (CI runs per ref). A history tag is never reused: its number is
    its UTC time in µs (after the newest tag's, if a clock lags) and 6 random digits, and
    its manifest names the images the publication changed. `latest` names the history tags
    it includes. If tags appeared since this publication read `latest` (`base`), the
    catalog under `latest` takes each image's entry from the newest publication that
    changed it, in history order, and the image's tags are pointed at that entry. After
    writing `latest`, the history is listed again; while a publication has landed that
    `latest` does not include, `latest` is written again, so whichever publication writes
    it last includes every one. Returns the catalog under `latest`, its push, and the bytes
    the catalog pushes sent."""
    repository = catalog.repository(CATALOG_REPOSITORY)
    own_catalog = compose(catalog, base.catalog, entries, log)
    own, sent = _push_history(registry, repository, own_catalog, sorted(entries))
    final, done, pushed = own_catalog, list[str](), None
    for _ in range(FOLD_ROUNDS):
        listed = history_tags(registry, repository)
        landed = [t for t in listed if t not in base.seen]
        if pushed is not None and landed == done:
            return final, pushed, sent
        others = [t for t in landed if t != own]
        if others:
            log("another publication landed meanwhile (" + ", ".join(others)
                + "): the catalog keeps what it changed")
            final, changed = _fold(catalog, registry, base, entries, own, landed)
            _follow(registry, changed)
        pushed = _push_text(registry, repository, CATALOG_TAG, final,
                            {INCLUDES: ",".join(listed)})
        sent += pushed.sent
        done = landed
    raise BuildFailed(f"{repository}: publications kept landing while this one wrote "
                      f"{CATALOG_TAG}; publish again")


def _push_history(registry: Registry, repository: str, published: PublishedCatalog,
                  changed: list[str]) -> tuple[str, int]:
    """This catalog under a new history tag, or the newest one if it holds the same; the
    tag, and the bytes sent."""
    tags = history_tags(registry, repository)
    text = published.to_json()
    sha = "sha256:" + hashlib.sha256(text.encode()).hexdigest()
    last = registry.manifest(repository, tags[-1]) if tags else None
    if last is not None and any(layer.get("digest") == sha
                                for layer in last[1].get("layers", [])):
        return tags[-1], 0
    newest = tags[-1][len(HISTORY):] if tags else ""
    taken = int(newest[:STAMP]) if len(newest) > STAMP else 0  # older numbers: 000042
    now = int(dt.datetime.now(dt.UTC).strftime("%Y%m%d%H%M%S%f"))
    tag = f"{HISTORY}{max(now, taken + 1):0{STAMP}d}{secrets.randbelow(10**6):06d}"
    return tag, _push_text(registry, repository, tag, published,
                           {CHANGED: ",".join(changed)}).sent


def _push_text(registry: Registry, repository: str, tag: str, published: PublishedCatalog,
               annotations: dict[str, str]) -> Pushed:
    stamps = [i.tested.tested_at for i in published.images if i.tested.tested_at]
    with tempfile.TemporaryDirectory(prefix="imagekit-catalog-") as tmp:
        path = Path(tmp) / "catalog.json"
        path.write_text(published.to_json())
        return registry.push_artifact(repository, [tag], path, CATALOG_LAYER_TYPE,
                                      CATALOG_CONFIG_TYPE, max(stamps, default=EPOCH),
                                      annotations)


def _fold(catalog: Catalog, registry: Registry, base: Base, entries: dict[str, PublishedImage],
          own: str, landed: list[str]) -> tuple[PublishedCatalog, list[PublishedImage]]:
    """The catalog with each image's entry from the newest publication since `base` that
    changed it (this one's own entries among them), and those entries."""
    repository = catalog.repository(CATALOG_REPOSITORY)
    changed: dict[str, PublishedImage] = {}

    def take(entry: PublishedImage) -> None:
        before = changed.get(entry.name) or entry_of(base.catalog, entry.name)
        if before is not None and before.digest != entry.digest:
            # Both stay in the image's history (WorkspaceKind keeps the older value).
            older = history(before, entry.digest)
            seen = {p.digest for p in older}
            entry = entry.model_copy(update={
                "history": older + [p for p in entry.history if p.digest not in seen]})
        changed[entry.name] = entry

    if own not in landed:  # the same catalog as one published before: it goes first
        for entry in entries.values():
            take(entry)
    for tag in landed:
        if tag == own:
            for entry in entries.values():
                take(entry)
            continue
        found = registry.artifact(repository, tag, CATALOG_LAYER_TYPE)
        if found is None:  # pruned meanwhile
            continue
        data, annotations = found
        names = set(annotations[CHANGED].split(",")) if CHANGED in annotations else None
        for entry in parse(data.decode(), f"{repository}:{tag}").images:
            before = entry_of(base.catalog, entry.name)
            if (entry.name in names if names is not None else
                    before is None or before.digest != entry.digest):
                take(entry)
    folded = compose(catalog, base.catalog, changed, lambda _: None)  # its warnings were said
    return folded, [changed[e.name] for e in folded.images if e.name in changed]


def _follow(registry: Registry, entries: list[PublishedImage]) -> None:
    """Point each entry's moving tags at it, its SIF's first: when publications raced for an
    image, its tags follow the entry the catalog keeps."""
    for entry in entries:
        moving = [t for t in entry.tags if not t.startswith((IMMUTABLE, UNTESTED))]
        if entry.sif is not None:
            registry.retag(entry.sif.repository, entry.sif.digest, moving)
        registry.retag(entry.repository, entry.digest, moving)


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
