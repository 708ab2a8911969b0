"""Rollback and retention, from the catalogs the registry keeps (`history-<number>` tags).

`imagekit publish --pin IMAGE=DIGEST` republishes the catalog with an earlier tested
digest of an image: its entry is taken whole from the catalog that published it (test
results, packages, SIF and SBOM included), the image's tags move back to it in the registry,
and every export follows. `imagekit prune --keep N` deletes from the registry what imagekit
pushed (its own `id-`, `tree-` and `untested-` tags, their SIFs, SBOMs and records) that
none of the last N published catalogs nor `latest` names, and the catalogs older than
those N. What is younger than the grace period stays whoever names it: a CI runner's push
that the run's last job (`publish --from-registry`) has not published yet.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

from imagekit.build import TREE_TAG
from imagekit.errors import ImagekitError, Problem
from imagekit.model import Catalog
from imagekit.publish.common import (
    CATALOG_REPOSITORY,
    CATALOG_TAG,
    IMMUTABLE,
    RECORD_LAYER_TYPE,
    UNTESTED,
    Log,
    PublishReport,
    base_of,
    entry_of,
    history_tags,
    previous_catalog,
    records_repository,
)
from imagekit.publish.registry import CATALOG_LAYER_TYPE, Registry, referrers_tag
from imagekit.publish.release import reinstate
from imagekit.published.catalog import PublishedCatalog, PublishedImage, parse
from imagekit.said import Said

OURS = (IMMUTABLE, TREE_TAG, UNTESTED)  # the tags imagekit itself gives what it pushes
GRACE = dt.timedelta(hours=24)  # longer than a CI run from its first push to its publish


def published_catalogs(catalog: Catalog, registry: Registry,
                       tags: list[str] | None = None) -> list[PublishedCatalog]:
    """The catalogs published under these history tags (default: all), newest first."""
    repository = catalog.repository(CATALOG_REPOSITORY)
    found = []
    for tag in reversed(history_tags(registry, repository) if tags is None else tags):
        data = registry.pull_artifact(repository, tag, CATALOG_LAYER_TYPE)
        if data is not None:
            found.append(parse(data.decode(), f"{repository}:{tag}"))
    return found


def parse_pins(catalog: Catalog, pins: list[str]) -> dict[str, str]:
    """IMAGE=DIGEST pairs; bad input is said before anything is touched."""
    found: dict[str, str] = {}
    problems = []
    for pin in pins:
        name, sep, digest = pin.partition("=")
        if not sep or name not in catalog.images:
            problems.append(Problem(None, "--pin", f"{pin!r}: expected IMAGE=DIGEST with an "
                                                   "image of the catalog"))
            continue
        digest = digest if digest.startswith("sha256:") else f"sha256:{digest}"
        if not 19 <= len(digest) <= 71 or not all(c in "0123456789abcdef"
                                                  for c in digest[7:]):
            problems.append(Problem(None, "--pin", f"{pin!r}: the digest must be sha256: "
                                                   "and at least 12 hex digits"))
            continue
        found[name] = digest
    if problems:
        raise ImagekitError(problems)
    return found


def _published_entry(catalogs: list[PublishedCatalog], name: str,
                     digest: str) -> PublishedImage | None:
    for published in catalogs:
        entry = entry_of(published, name)
        if entry is not None and entry.digest.startswith(digest):
            return entry
    return None


def pin(catalog: Catalog, pins: list[str], log: Log) -> PublishReport:
    """Republish the catalog with these images rolled back to earlier published digests."""
    started = time.monotonic()
    wanted = parse_pins(catalog, pins)
    registry = Registry(catalog)
    registry.check()
    base = base_of(catalog, registry)
    catalogs = published_catalogs(catalog, registry)
    problems = []
    entries: dict[str, PublishedImage] = {}
    for name, digest in wanted.items():
        entry = _published_entry(catalogs, name, digest)
        if entry is None:
            problems.append(Problem(None, "--pin", f"{name}={digest}: no published catalog "
                                                   "names this digest for this image"))
        elif entry.tested.status != "passed":
            problems.append(Problem(None, "--pin", f"{name}={digest}: was published untested;"
                                                   " only a tested image can be pinned"))
        elif registry.manifest(entry.repository, entry.digest) is None:
            problems.append(Problem(None, "--pin", f"{entry.reference} is no longer in the "
                                                   "registry (pruned?)"))
        else:
            entries[name] = entry
    if problems:
        raise ImagekitError(problems)
    return reinstate(catalog, registry, base, entries, started, log, "pinned")


@dataclass
class PruneReport:
    kept_catalogs: list[str] = field(default_factory=list)
    deleted_catalogs: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)  # REPOSITORY@DIGEST
    kept: int = 0  # manifests imagekit pushed that a kept catalog still names
    young: list[str] = field(default_factory=list)  # REPOSITORY@DIGEST kept for the grace

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    def summary(self, dry_run: bool) -> str:
        verb = "would delete" if dry_run else "deleted"
        young = (f", and {len(self.young)} younger than the grace period"
                 if self.young else "")
        return (f"kept {len(self.kept_catalogs)} catalogs and the {self.kept} manifests they "
                f"name{young}; {verb} {len(self.deleted)} manifests and "
                f"{len(self.deleted_catalogs)} older catalogs")


def named_digests(catalogs: Iterable[PublishedCatalog]) -> set[str]:
    """Every manifest digest these catalogs name: images (and each architecture an index
    holds), their history, SIFs, SBOMs, provenance."""
    names: set[str] = set()
    for published in catalogs:
        for image in published.images:
            names.add(image.digest)
            names.update(image.members())  # an index's architectures
            names.update(p.digest for p in image.history)
            names.update(m for p in image.history for m in p.members)
            if image.sif is not None:
                names.add(image.sif.digest)
            if image.sbom is not None:
                names.add(image.sbom.digest)
            if image.provenance is not None:
                names.add(image.provenance.digest)
    return names


def prune(catalog: Catalog, keep: int, log: Log, *, dry_run: bool = False,
          grace: dt.timedelta = GRACE) -> Said:
    """`imagekit prune`: what was deleted (with `dry_run`, what would be) and what kept."""
    report = pruned(catalog, keep, log, dry_run=dry_run, grace=grace)
    return Said([report.summary(dry_run)], data=report.as_dict())


def pruned(catalog: Catalog, keep: int, log: Log, *, dry_run: bool = False,
           grace: dt.timedelta = GRACE) -> PruneReport:
    if keep < 1:
        raise ImagekitError(Problem(None, "--keep", "keep at least the last published catalog"))
    if grace < dt.timedelta(0):
        raise ImagekitError(Problem(None, "--grace-hours", "a grace period is 0 or more"))
    registry = Registry(catalog)
    registry.check()
    report = PruneReport()
    repository = catalog.repository(CATALOG_REPOSITORY)
    tags = history_tags(registry, repository)
    if not tags:
        raise ImagekitError("nothing was published to this registry yet: nothing to prune")
    kept_tags, old_tags = tags[-keep:], tags[:-keep]
    catalogs = published_catalogs(catalog, registry, kept_tags)  # only the kept ones pulled
    # `latest` too: after publications raced, it holds what each of them changed.
    latest = previous_catalog(catalog, registry)
    named = named_digests([*catalogs, *([latest] if latest else [])])
    # The catalogs' own manifests: the kept ones are named by their tags.
    kept_digests = {found[0] for t in [*kept_tags, CATALOG_TAG]
                    if (found := registry.manifest(repository, t)) is not None}
    report.kept_catalogs = kept_tags
    for tag in old_tags:
        found = registry.manifest(repository, tag)
        if found is None or found[0] in kept_digests:
            continue
        report.deleted_catalogs.append(tag)
        if not dry_run:
            registry.delete(repository, found[0])
    young_since = dt.datetime.now(dt.UTC) - grace
    for name in catalog.images:
        kept = _prune_repository(registry, catalog.repository(name), named, report, dry_run,
                                 log, young_since)
        _prune_repository(registry, catalog.sif_repository(name), named, report, dry_run, log,
                          young_since)
        _prune_records(registry, records_repository(catalog, name), kept, report, dry_run,
                       log)
    return report


def _prune_repository(registry: Registry, repository: str, named: set[str],
                      report: PruneReport, dry_run: bool, log: Log,
                      young_since: dt.datetime) -> set[str]:
    """Delete what imagekit pushed here that nothing kept names and that is older than the
    grace period; the digests kept."""
    tags = registry.tags(repository)
    # What a tag users follow (latest, a version) names stays, whatever imagekit's tags say.
    manifests = {t: found for t in tags if not t.startswith((*OURS, "sha256-"))
                 and (found := registry.manifest(repository, t)) is not None}
    # An index a followed tag names keeps its architectures' manifests too.
    followed = {digest for digest, _ in manifests.values()} | {
        str(m.get("digest")) for _, body in manifests.values()
        for m in body.get("manifests", [])}
    kept = set(followed)
    seen: set[str] = set()
    for tag in tags:
        if not tag.startswith(OURS):
            continue
        found = registry.manifest(repository, tag)
        if found is None or found[0] in seen:
            continue
        digest = found[0]
        seen.add(digest)
        if digest in named or digest in followed:
            kept.add(digest)
            report.kept += 1
            continue
        made = registry.created(repository, found[1])
        if made is not None and made > young_since:
            kept.add(digest)
            report.young.append(f"{repository}@{digest}")
            log(f"keeping {repository}@{digest} ({tag}): made {made:%Y-%m-%d %H:%M} UTC, "
                "within the grace period")
            continue
        _delete(registry, repository, digest, tag, report, dry_run, log)
    return kept


def _prune_records(registry: Registry, repository: str, kept: set[str], report: PruneReport,
                   dry_run: bool, log: Log) -> None:
    """A runner's record stays while the image it records stays."""
    for tag in registry.tags(repository):
        data = registry.pull_artifact(repository, tag, RECORD_LAYER_TYPE)
        if data is None:
            continue
        try:
            digest = PublishedImage.model_validate_json(data).digest
        except ValueError:
            digest = ""
        if digest in kept:
            continue
        found = registry.manifest(repository, tag)
        if found is not None:
            _delete(registry, repository, found[0], tag, report, dry_run, log)


def _delete(registry: Registry, repository: str, digest: str, tag: str, report: PruneReport,
            dry_run: bool, log: Log) -> None:
    report.deleted.append(f"{repository}@{digest}")
    log(f"{'would delete' if dry_run else 'deleting'} {repository}@{digest} ({tag})")
    if dry_run:
        return
    for referrer in registry.referrers(repository, digest):  # its SBOM
        registry.delete(repository, str(referrer["digest"]))
    registry.delete(repository, digest)
    index = registry.manifest(repository, referrers_tag(digest))
    if index is not None:
        registry.delete(repository, index[0])
