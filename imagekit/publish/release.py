"""The release of a publication: the new published catalog composed from the fresh entries
and the catalog published before, its exports and SBOMs, the catalog artifact pushed (under
`latest` and a history tag), and only then dist/catalog.json, dist/exports/, dist/sbom/ and
the site replaced. `finish` does it after `publish` pushed images; `reinstate` does it for
entries the registry already holds (`publish --from-registry`, `publish --pin`).
"""

from __future__ import annotations

import hashlib
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
    EPOCH,
    HISTORY,
    IMMUTABLE,
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
)
from imagekit.site.build import write_site


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
