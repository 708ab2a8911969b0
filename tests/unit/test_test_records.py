"""Given an image ID that `imagekit test` passed before, when it is asked again with the same
checks, then nothing runs again; any change to what is checked, a failure or an older record
runs them again."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from imagekit.checks import CheckResult, record, runner
from imagekit.model import Catalog, Image
from tests.unit.fakes import FakeEngine

SCIPY = "sha256:" + "5" * 64


@pytest.fixture
def here(catalog: Catalog, tmp_path: Path) -> Catalog:
    return dataclasses.replace(catalog, root=tmp_path)


@pytest.fixture
def engine(here: Catalog) -> FakeEngine:
    fake = FakeEngine()
    fake.add(SCIPY, here.ref("scipy"))
    return fake


def _save(catalog: Catalog, ok: bool = True, plan: str | None = None) -> record.TestRecord:
    image = catalog.images["scipy"]
    return record.save(catalog, "scipy", SCIPY, [CheckResult("scipy", "smoke", ok, "seen")],
                       record.plan(image, "linux/amd64", FakeEngine().description)
                       if plan is None else plan)


def _again(engine: FakeEngine, catalog: Catalog, force: bool = False
           ) -> tuple[list[tuple[str, str, str]], list[str]]:
    """test_images on scipy: the notes it made, and the images it started checking."""
    notes: list[tuple[str, str, str]] = []
    started: list[str] = []

    def note(kind: str, who: str, text: str) -> None:
        notes.append((kind, who, text))

    class Started(Exception):
        pass

    def refuse(*args: object, **kwargs: object) -> None:
        started.append(str(args[0]) if args else "")
        raise Started

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("imagekit.checks.runner.test_image", refuse)
        try:
            report = runner.test_images(engine, catalog, [catalog.images["scipy"]],
                                        ("linux/amd64",), lambda result: None, note,
                                        force=force)
        except Started:
            return notes, ["scipy"]
    assert report.said().code == 0
    assert [r.image for r in report.passed_before] == ["scipy"]
    assert json.loads(json.dumps(report.as_dict()))["passed_before"][0]["image_id"] == SCIPY
    return notes, started


def test_a_passed_record_of_the_same_plan_is_reused(here: Catalog, engine: FakeEngine) -> None:
    saved = _save(here)
    notes, started = _again(engine, here)
    assert started == []
    [(kind, who, text)] = notes
    assert (kind, who) == ("before", "scipy")
    assert saved.tested_at in text and "--force" in text


@pytest.mark.parametrize("why", ["force", "failed", "older record", "other plan",
                                 "damaged", "retagged", "other engine"])
def test_anything_else_runs_the_checks_again(here: Catalog, engine: FakeEngine,
                                             why: str) -> None:
    if why == "failed":
        _save(here, ok=False)
    elif why == "older record":  # written before records named their plan
        path = here.dist / "tested" / f"{SCIPY.removeprefix('sha256:')}.json"
        _save(here)
        data = json.loads(path.read_text())
        del data["plan"]
        path.write_text(json.dumps(data))
    elif why == "other plan":
        _save(here, plan="0" * 64)
    elif why == "other engine":  # the same image ID, passed in another engine
        _save(here, plan=record.plan(here.images["scipy"], "linux/amd64", "podman 5.8.0"))
    elif why == "damaged":
        _save(here)
        (here.dist / "tested" / f"{SCIPY.removeprefix('sha256:')}.json").write_text("{")
    else:
        _save(here)
        if why == "retagged":  # a build moved the tag to a new image ID
            engine.add("sha256:" + "6" * 64, here.ref("scipy"))
    _, started = _again(engine, here, force=why == "force")
    assert started == ["scipy"]


def _changed(image: Image, **runtime: object) -> Image:
    changed = dataclasses.replace(image.runtime, **runtime)  # type: ignore[arg-type]
    return dataclasses.replace(image, stack=dataclasses.replace(image.stack, runtime=changed))


def test_the_plan_names_the_checks_the_runtime_the_platform_the_image_and_the_engine(
        catalog: Catalog) -> None:
    scipy = catalog.images["scipy"]
    plan = record.plan(scipy, "linux/amd64", "docker 20.10.24")
    assert plan == record.plan(catalog.images["scipy"], "linux/amd64", "docker 20.10.24")
    fewer = dataclasses.replace(scipy, checks=dataclasses.replace(
        scipy.checks, imports=scipy.checks.imports[:-1]))
    others = [record.plan(fewer, "linux/amd64", "docker 20.10.24"),
              record.plan(_changed(scipy, port=scipy.runtime.port + 1), "linux/amd64",
                          "docker 20.10.24"),
              record.plan(_changed(scipy, user="someone"), "linux/amd64", "docker 20.10.24"),
              record.plan(scipy, "linux/arm64", "docker 20.10.24"),
              record.plan(dataclasses.replace(scipy, name="scipy2"), "linux/amd64",
                          "docker 20.10.24"),
              record.plan(scipy, "linux/amd64", "podman 5.8.0 (rootful)")]
    assert plan not in others and len(set(others)) == len(others)
