"""Before anything is pushed: given images built (or not), tested (or not) and converted (or
not), `imagekit publish` and `imagekit push` either get every candidate or every problem."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from imagekit.checks import CheckResult, record
from imagekit.errors import ImagekitError
from imagekit.model import Catalog
from imagekit.publish.preflight import preflight
from imagekit.schema import Platform
from imagekit.sif import sif_path
from tests.unit.fakes import FakeEngine

SCIPY, R = "sha256:" + "1" * 64, "sha256:" + "2" * 64
ARM = "sha256:" + "3" * 64


@pytest.fixture
def here(catalog: Catalog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Catalog:
    """The project's catalog with its dist/ in a temporary folder, and no signing key."""
    monkeypatch.delenv("IMAGEKIT_COSIGN_KEY", raising=False)
    return dataclasses.replace(catalog, root=tmp_path)


def record_tests(catalog: Catalog, image: str, image_id: str, *, ok: bool = True) -> None:
    record.save(catalog, image, image_id, [CheckResult(image, "smoke", ok, "")], plan="")


def converted(catalog: Catalog, image: str, image_id: str,
              platform: Platform = "linux/amd64") -> Path:
    sif = sif_path(catalog, catalog.images[image], platform=platform)
    sif.parent.mkdir(parents=True, exist_ok=True)
    sif.write_bytes(b"SIF")
    sif.with_suffix(".sif.json").write_text(json.dumps({"image_id": image_id}))
    return sif


def problems(catalog: Catalog, engine: FakeEngine, names: list[str] | None,
             skip_tests: bool = False) -> list[str]:
    with pytest.raises(ImagekitError) as raised:
        preflight(catalog, engine, names, skip_tests)
    return [f"{p.field}: {p.message}" for p in raised.value.problems]


def test_a_built_tested_converted_image_is_a_candidate(here: Catalog) -> None:
    engine = FakeEngine()
    engine.add(SCIPY, here.ref("scipy"))
    record_tests(here, "scipy", SCIPY)
    sif = converted(here, "scipy", SCIPY)
    [candidate] = preflight(here, engine, ["scipy"], skip_tests=False)
    assert (candidate.image.name, candidate.info.id, candidate.sif) == ("scipy", SCIPY, sif)
    assert candidate.tested is not None and candidate.tested.ok
    assert (candidate.signing_key, candidate.platform) == (None, "linux/amd64")


def test_every_problem_of_the_named_images_is_said_at_once(here: Catalog) -> None:
    engine = FakeEngine()
    engine.add(SCIPY, here.ref("scipy"))
    engine.add(R, here.ref("r"))
    record_tests(here, "r", R, ok=False)
    converted(here, "scipy", "sha256:" + "9" * 64)  # from an earlier build
    assert problems(here, engine, ["vscode", "r", "scipy"]) == [
        "images.vscode: is not built here (run `imagekit build vscode`)",
        f"images.r: image {R[:19]} failed 1 of 1 checks: run `imagekit test r` (or publish "
        "with --skip-tests)",
        f"images.scipy: image {SCIPY[:19]} was not tested: run `imagekit test scipy` (or "
        "publish with --skip-tests)",
    ]
    record_tests(here, "scipy", SCIPY)
    assert problems(here, engine, ["scipy"]) == [
        "images.scipy: scipy_latest.sif is missing or was made from another image: run "
        "`imagekit build scipy --format sif`"]


def test_skip_tests_publishes_untested_images(here: Catalog) -> None:
    engine = FakeEngine()
    engine.add(R, here.ref("r"))
    [candidate] = preflight(here, engine, ["r"], skip_tests=True)
    assert (candidate.image.name, candidate.tested, candidate.sif) == ("r", None, None)


def test_all_leaves_out_what_is_not_built_here(here: Catalog) -> None:
    engine = FakeEngine()
    assert problems(here, engine, None) == [
        ": nothing to publish: no listed image is built here"]
    engine.add(R, here.ref("r"))
    record_tests(here, "r", R)
    assert [c.image.name for c in preflight(here, engine, None, skip_tests=False)] == ["r"]


def test_an_image_that_is_not_published_is_refused_by_name(here: Catalog) -> None:
    quiet = dataclasses.replace(here.images["r"], publish=False)
    sif_only = dataclasses.replace(here.images["scipy"], formats=("sif",))
    catalog = dataclasses.replace(here, images={**here.images, "r": quiet, "scipy": sif_only})
    assert problems(catalog, FakeEngine(), ["r", "scipy"]) == [
        "images.r: publish: false in the catalog",
        "images.scipy: has no docker format to publish"]


def test_each_platform_of_an_image_is_checked_and_named(here: Catalog) -> None:
    both: tuple[Platform, ...] = ("linux/amd64", "linux/arm64")
    scipy = dataclasses.replace(here.images["scipy"], platforms=both)
    catalog = dataclasses.replace(here, platforms=both, images={**here.images, "scipy": scipy})
    engine = FakeEngine()
    engine.add(SCIPY, catalog.ref("scipy"))
    record_tests(catalog, "scipy", SCIPY)
    converted(catalog, "scipy", SCIPY)
    assert problems(catalog, engine, None) == [
        "images.scipy: is not built here for linux/arm64 (run `imagekit build scipy "
        "--platform linux/arm64`)"]
    engine.add(ARM, catalog.ref("scipy", platform="linux/arm64"))
    assert problems(catalog, engine, ["scipy"]) == [
        f"images.scipy: image {ARM[:19]} (linux/arm64) was not tested: run `imagekit test "
        "scipy --platform linux/arm64` (or publish with --skip-tests)"]
    record_tests(catalog, "scipy", ARM)
    assert problems(catalog, engine, ["scipy"]) == [
        "images.scipy: scipy_latest_arm64.sif is missing or was made from another image: "
        "run `imagekit build scipy --platform linux/arm64 --format sif`"]
    converted(catalog, "scipy", ARM, "linux/arm64")
    found = preflight(catalog, engine, ["scipy"], skip_tests=False)
    assert [(c.platform, c.info.id) for c in found] == [("linux/amd64", SCIPY),
                                                        ("linux/arm64", ARM)]
