"""`imagekit publish`'s door: a new publication from this engine, CI's from the registry,
or a roll back to earlier digests; each returns the same report."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from imagekit.errors import ImagekitError
from imagekit.model import Catalog
from imagekit.publish.common import PublishReport
from imagekit.said import Markup, Rows, Said
from imagekit.units import human_size

SKIP_TESTS = Markup("[bold yellow]WARNING: --skip-tests: images that did not pass `imagekit "
                    "test` are published, under an untested-<id> tag only, and marked "
                    "untested in the catalog[/]")


@dataclass(frozen=True)
class PublishJob:
    """What `imagekit publish` was asked for, as given."""

    images: list[str] = field(default_factory=list)
    all_: bool = False
    skip_tests: bool = False
    from_registry: bool = False
    pins: list[str] = field(default_factory=list)
    engine: str | None = None


def publish(catalog: Catalog, job: PublishJob, say: Callable[[str], None],
            warn: Callable[[str], None]) -> Said:
    """`imagekit publish`: the report a row per image, then the catalog and the exports."""
    if job.skip_tests:
        catalog.select(job.images, job.all_ or bool(job.pins))  # an unknown name is said first
        warn(SKIP_TESTS)
    return said(_publish(catalog, job, say))


def _publish(catalog: Catalog, job: PublishJob, say: Callable[[str], None]) -> PublishReport:
    names = (None if job.all_ or job.pins
             else [i.name for i in catalog.select(job.images)])
    if job.pins:
        from imagekit.publish.retention import pin

        if job.images or job.all_ or job.from_registry or job.skip_tests:
            raise ImagekitError("--pin republishes the catalog with earlier digests: "
                                "name no image and pass no other option")
        return pin(catalog, job.pins, say)
    if job.from_registry:
        from imagekit.publish.shared import publish_from_registry

        if job.skip_tests:
            raise ImagekitError("--skip-tests: the registry holds tested images only "
                                "(`imagekit push` refuses untested ones)")
        return publish_from_registry(catalog, names, say)
    from imagekit.engine.choice import connect
    from imagekit.publish.pipeline import publish as from_engine

    return from_engine(catalog, connect(catalog, job.engine), names,
                       skip_tests=job.skip_tests, log=say)


COLUMNS = ("image", "digest", "tags", "tested", "sent", "SIF sent")


def said(report: PublishReport) -> Said:
    """The report as `imagekit publish` prints it: a row per image, then the catalog, the
    exports and what was sent."""
    rows = [(line.image, line.reference.rpartition("@")[2][:19] + "…", ", ".join(line.tags),
             line.tested, human_size(line.sent),
             human_size(line.sif_sent) if line.sif_reference else "-")
            for line in report.images]
    state = "written" if report.changed else "unchanged"
    return Said([Rows(COLUMNS, rows),
                 f"catalog: {report.catalog} ({state}), in the registry as "
                 f"{report.catalog_digest}",
                 f"exports: {len(report.exports)} files in dist/exports/",
                 f"{human_size(report.sent)} sent in {report.seconds} s"], data=report.as_dict())
