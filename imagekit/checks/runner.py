"""`imagekit test`: the static checks, then the runtime contract of the image's type."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Protocol

from imagekit.checks import CheckResult, record
from imagekit.checks.contract import CONTRACTS, Target
from imagekit.checks.static import run_static
from imagekit.engine.client import Engine
from imagekit.engine.emulation import environment, unable
from imagekit.errors import ImagekitError
from imagekit.model import Catalog, Image
from imagekit.said import Said
from imagekit.schema import Platform


def test_image(engine: Engine, catalog: Catalog, image: Image,
               on_result: Callable[[CheckResult], None],
               platform: Platform | None = None) -> Target:
    """Every check of the image built for `platform` (default: the catalog's first); another
    architecture's runs under emulation, slower but the same checks."""
    ref = catalog.ref(image.name, platform=platform)
    info = engine.image(ref)
    if info is None:
        raise ImagekitError(f"{image.name}: {ref} is not built in {engine.name}'s store "
                            f"(run `imagekit build {image.name}`, with the same --engine)")
    # Every container runs the ID resolved here, so a build moving the tag meanwhile cannot
    # make the result describe another image.
    target = Target(engine, info.id, image, env=environment(info.architecture))
    seen = 0

    def flush() -> None:
        nonlocal seen
        for result in target.results[seen:]:
            on_result(result)
        seen = len(target.results)

    run_static(target)
    flush()
    for contract in CONTRACTS[image.runtime.type]:
        contract(target)
        flush()
    return target


@dataclass
class TestReport:
    """What `imagekit test` found: each check's result, the contract's latencies, and the
    images not built here or not runnable here."""

    results: list[CheckResult] = field(default_factory=list)
    latencies: dict[str, dict[str, float]] = field(default_factory=dict)
    not_built: list[str] = field(default_factory=list)
    not_tested: list[str] = field(default_factory=list)
    passed_before: list[record.TestRecord] = field(default_factory=list)

    @property
    def failed(self) -> list[CheckResult]:
        return [r for r in self.results if not r.ok]

    def as_dict(self) -> dict[str, object]:
        return {"results": [asdict(r) for r in self.results], "latencies": self.latencies,
                "not_built": self.not_built, "not_tested": self.not_tested,
                "passed_before": [asdict(r) for r in self.passed_before]}

    def summary(self) -> str:
        return (f"{len(self.results) - len(self.failed)} passed, {len(self.failed)} failed"
                + (f", {len(self.passed_before)} images unchanged since they passed"
                   if self.passed_before else "")
                + (f", {len(self.not_built)} images not built" if self.not_built else "")
                + (f", {len(self.not_tested)} not tested (no emulation)"
                   if self.not_tested else ""))

    def said(self) -> Said:
        """The summary line; exit 1 when a check failed or an image could not be tested."""
        return Said([self.summary()], data=self.as_dict(),
                    code=int(bool(self.failed or self.not_tested)))


Note = Callable[[str, str, str], None]  # kind (skip, fail, head, before), image, text


def _passed_before(engine: Engine, catalog: Catalog, image: Image, platform: Platform,
                   plan: str) -> record.TestRecord | None:
    """The record of the image ID now under the image's tag, when it passed `plan`."""
    info = engine.image(catalog.ref(image.name, platform=platform))
    if info is None:
        return None
    found = record.load(catalog, info.id)
    return found if found is not None and found.ok and found.plan == plan else None


def test_images(engine: Engine, catalog: Catalog, images: list[Image],
                platforms: tuple[Platform, ...], on_result: Callable[[CheckResult], None],
                note: Note, only_built: bool = False, force: bool = False) -> TestReport:
    """The test step's door: every image on each of its platforms, its record saved.

    `only_built` (`--all`) tests what is built here and reports the rest; an image that
    cannot run here (no emulation) is never skipped quietly: it is not tested, and fails.
    An image ID that passed the same checks before is not tested again, unless `force`.
    """
    report = TestReport()
    described = engine.description  # asks the engine its version: once
    pairs = [(i, p) for p in platforms for i in images if p in i.platforms]
    if only_built:
        missing = [(i, p) for i, p in pairs
                   if engine.image(catalog.ref(i.name, platform=p)) is None]
        pairs = [pair for pair in pairs if pair not in missing]
        for i, p in missing:
            report.not_built.append(catalog.on(i.name, p))
            note("skip", i.name, f"not built ({catalog.ref(i.name, platform=p)})")
    for image, p in pairs:
        why = unable(p)
        if why is not None:
            note("fail", f"{image.name} [{p}]", f"not tested: {why}")
            report.not_tested.append(f"{image.name} [{p}]")
            continue
        who = f"{image.name} [{p}]" if len(platforms) > 1 else image.name
        plan = record.plan(image, p, described)
        before = None if force else _passed_before(engine, catalog, image, p, plan)
        if before is not None:
            note("before", who, f"this image ID passed its {before.passed} checks at "
                 f"{before.tested_at}; not run again (--force runs them again)")
            report.passed_before.append(before)
            continue
        if len(platforms) > 1:
            note("head", who, "")
        target = test_image(engine, catalog, image, on_result, platform=p)
        report.results += target.results
        report.latencies[catalog.on(image.name, p)] = target.latencies
        record.save(catalog, image.name, target.ref, target.results, plan)
    return report


class Shown(Protocol):
    """How `imagekit test` shows each result and each note as they come."""

    def result(self, result: CheckResult) -> None: ...
    def note(self, kind: str, who: str, text: str) -> None: ...


def test(catalog: Catalog, names: list[str], all_: bool, platforms: list[str] | None,
         engine: str | None, shown: Shown, force: bool = False) -> Said:
    """`imagekit test`: the named images (`all_`: every one built here) on each platform
    given (default: the catalog's), in the engine chosen; `force`: also those whose image
    ID passed the same checks before."""
    from imagekit.engine.choice import connect

    selected = catalog.select(names, all_)
    chosen = catalog.choose_platforms(platforms)
    return test_images(connect(catalog, engine), catalog, selected, chosen, shown.result,
                       shown.note, only_built=all_, force=force).said()
