"""`imagekit publish`: tested images and their SIFs to the registry, then the catalog.

The order is what keeps a failure harmless: everything is checked before the first push;
images and SIFs are pushed (a rerun sends only what the registry lacks); the new catalog is
composed from the digests the registry answered with and from the catalog published before
(read back from the registry, so any machine starts from the same history); the exports are
derived from it; the catalog artifact is pushed; only then are dist/catalog.json and
dist/exports/ replaced. A failure anywhere before that last step leaves both as they were.

Its door is `publish`. The checks before the first push are preflight.py's, the catalog and
dist/ after the last are release.py's; `publish_one` (one image with its SIF, SBOM, signature
and test record) is also what `imagekit push` (shared.py) pushes a runner's image with.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

from imagekit.attest.packages import read_packages
from imagekit.attest.provenance import MEDIA_TYPE as PROVENANCE_TYPE
from imagekit.attest.sbom import MEDIA_TYPE as SBOM_TYPE
from imagekit.attest.sbom import make_sbom
from imagekit.attest.signing import public_key_sha256, sign_image
from imagekit.build import BUILT_BY_LABEL
from imagekit.engine.client import Engine
from imagekit.model import Catalog, Image, arch
from imagekit.publish.common import (
    EPOCH,
    IMMUTABLE,
    INDEX,
    TEST_RECORD_TYPE,
    UNTESTED,
    ImageReport,
    Log,
    PublishReport,
    base_of,
    entry_of,
)
from imagekit.publish.preflight import Candidate, preflight
from imagekit.publish.provenance import provenance_of
from imagekit.publish.registry import SIF_CONFIG_TYPE, SIF_LAYER_TYPE, Pushed, Registry
from imagekit.publish.release import catalog_metadata, finish, history
from imagekit.published.catalog import (
    PlatformImage,
    Provenance,
    PublishedImage,
    Sbom,
    Sif,
    Signature,
    TestSummary,
)
from imagekit.sif import read_sidecar


def publish(catalog: Catalog, engine: Engine, names: list[str] | None, *, skip_tests: bool,
            log: Log) -> PublishReport:
    """Publish the named images (None: every listed image built here) and the catalog."""
    started = time.monotonic()
    registry = Registry(catalog)
    candidates = preflight(catalog, engine, names, skip_tests)
    registry.check()
    base = base_of(catalog, registry)
    previous = base.catalog
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
    return finish(catalog, registry, base, entries, report, started, log)


def by_image(candidates: list[Candidate]) -> list[list[Candidate]]:
    """The candidates of each image together, its platforms in the catalog's order."""
    groups: dict[str, list[Candidate]] = {}
    for candidate in candidates:
        groups.setdefault(candidate.image.name, []).append(candidate)
    return list(groups.values())


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
                registry_tags: list[str] | None = None,
                sign_manifest: bool = True) -> tuple[PublishedImage, ImageReport]:
    """Push one image and its SIF; the entry the catalog gets for it.

    `registry_tags`: push under the immutable tag and these (a CI runner's tree tag) instead
    of the moving tags, which `publish --from-registry` moves later; the entry still names
    the tags the image is published under. `sign_manifest` False: an architecture's image
    in an index, which is signed as the index (its provenance statement is signed still).

    Immutable tags first, then everything that belongs to the publication (SIF, SBOM,
    provenance, signatures, test record), each read back; the tags people follow move last, so a
    failure on the way leaves them where they were."""
    image, info = candidate.image, candidate.info
    packages = read_packages(engine, info.id, image.runtime.venv)
    immutable, moving = _tags(catalog, candidate)
    tags = [*moving, immutable]
    pushed_tags = tags if registry_tags is None else [*registry_tags, immutable]
    log(f"[{image.name}] pushing {catalog.repository(image.name)} ({', '.join(pushed_tags)})")
    created = info.labels.get("org.opencontainers.image.created", EPOCH)
    sif: Sif | None = None
    sif_pushed: Pushed | None = None
    # The engine pushes the image beside the SIF's upload; both are in, and read back,
    # before anything refers to them.
    with registry.pushing_image(engine, info.id, catalog.repository(image.name), immutable,
                                [], stopped=lambda: log(f"[{image.name}] stopped the engine's "
                                                        "push")) as image_pushed:
        if candidate.sif is not None:
            sif_pushed = registry.push_artifact(catalog.sif_repository(image.name),
                                                [immutable], candidate.sif, SIF_LAYER_TYPE,
                                                SIF_CONFIG_TYPE, created)
        pushed = image_pushed()
    log(f"[{image.name}] pushed {pushed.reference} ({_mb(pushed.sent)} sent, "
        f"{pushed.seconds} s)")
    if candidate.sif is not None and sif_pushed is not None:
        recorded = read_sidecar(candidate.sif) or {}
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
            signed_by=recorded.get("signed_by") or None,
            compression=recorded.get("compression") or "gzip",
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
    statement = provenance_of(catalog, engine, candidate, pushed.repository, pushed.digest,
                              sif.sha256 if sif else "").statement()
    stated = registry.push_referrer(pushed.repository, pushed.digest, statement,
                                    PROVENANCE_TYPE, f"{image.name}.intoto.json", created)
    provenance = Provenance(reference=f"{pushed.repository}@{stated.digest}",
                            digest=stated.digest, sha256=stated.content.removeprefix("sha256:"),
                            signed=candidate.signing_key is not None)
    # The statement is signed too: it is what binds the SIF to the image.
    _sign(catalog, registry, image, provenance.reference, candidate.signing_key, log)
    log(f"[{image.name}] pushed its provenance {provenance.reference}")
    signature = _sign(catalog, registry, image, pushed.reference,
                      candidate.signing_key if sign_manifest else None, log)
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
    # Everything of the publication is in and read back: now the tags move, the SIF's first.
    follow = pushed_tags[:-1]
    if sif_pushed is not None:
        registry.retag(sif_pushed.repository, sif_pushed.digest, follow)
    registry.retag(pushed.repository, pushed.digest, follow)
    entry = PublishedImage(
        **catalog_metadata(catalog, image, default=False),
        repository=pushed.repository,
        digest=pushed.digest,
        reference=pushed.reference,
        image_id=info.id,
        tags=tags,
        size=pushed.size,
        tested=summary,
        built_by=info.labels.get(BUILT_BY_LABEL),
        sif=sif,
        packages=packages,
        sbom=sbom,
        signature=signature,
        provenance=provenance,
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
        entry, line = publish_one(catalog, engine, registry, candidate, None, log,
                                  registry_tags=[], sign_manifest=False)
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
                               if e.sif else None, sbom=e.sbom, provenance=e.provenance)
                 for c, e, _ in pushed]
    entry = head.model_copy(update={
        "digest": index.digest, "reference": index.reference, "tags": tags, "sif": sif,
        "signature": signature, "platforms": platforms,
        "tested": TestSummary(status="skipped") if untested else head.tested,
        "history": history(before, index.digest), "provenance": None})
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


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"
