"""Given a catalog and an engine's images, when I plan or run builds, then parents come
first, each image once, the cache decides what is built, and a failure stops its subtree."""

from __future__ import annotations

from pathlib import Path

import docker.errors
import pytest
import requests

from imagekit.build import (
    CACHE_LABEL,
    Outcome,
    build_args,
    dry_run,
    looks_like_version,
    run_builds,
    sanitize_tag,
    secrets,
)
from imagekit.engine.builders import BuildRequest, Progress
from imagekit.model import Catalog
from imagekit.schema import Proxy
from tests.unit.fakes import (
    BASE_ID,
    FakeBuilder,
    FakeEngine,
    build_all,
    engine_with_base,
    with_site,
    without_wheelhouse,
)


@pytest.fixture
def cat(catalog: Catalog, tmp_path: Path) -> Catalog:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    return without_wheelhouse(catalog, wheels)


# --- order ---------------------------------------------------------------------------------

def test_the_closure_puts_parents_first_each_once(cat: Catalog) -> None:
    order = [i.name for i in cat.closure(["pytorch", "scipy-hpc", "scipy", "pytorch"])]
    assert order == ["base", "scipy", "scipy-hpc", "pytorch"]


def test_the_closure_of_everything_is_the_catalog_in_build_order(cat: Catalog) -> None:
    order = [i.name for i in cat.closure(list(cat.images))]
    assert sorted(order) == sorted(cat.images) and len(order) == len(set(order))
    for image in cat.images.values():
        if image.parent is not None:
            assert order.index(image.parent) < order.index(image.name)


def test_the_lineage_is_root_first(cat: Catalog) -> None:
    assert [i.name for i in cat.lineage("pytorch-cuda")] == ["base", "scipy", "pytorch-cuda"]


# --- dry run -------------------------------------------------------------------------------

def test_a_dry_run_builds_and_tags_nothing(cat: Catalog) -> None:
    engine = engine_with_base(cat)
    builder = FakeBuilder(engine)
    outcomes = dry_run(cat, engine, builder, ["scipy-hpc"])
    assert [(o.image, o.status) for o in outcomes] == [
        ("base", "planned"), ("scipy", "planned"), ("scipy-hpc", "planned")]
    assert builder.requests == [] and engine.tagged == []
    assert outcomes[0].ref == cat.ref("base")


def test_a_dry_run_after_a_build_says_what_is_cached(cat: Catalog) -> None:
    engine = engine_with_base(cat)
    build_all(cat, engine, FakeBuilder(engine), ["scipy"])
    builder = FakeBuilder(engine)
    outcomes = dry_run(cat, engine, builder, ["scipy-hpc", "r"])
    assert [(o.image, o.status) for o in outcomes] == [
        ("base", "cached"), ("r", "planned"), ("scipy", "cached"), ("scipy-hpc", "planned")]


def test_a_dry_run_with_another_builder_plans_a_rebuild(cat: Catalog) -> None:
    engine = engine_with_base(cat)
    build_all(cat, engine, FakeBuilder(engine), ["base"])
    outcomes = dry_run(cat, engine, FakeBuilder(engine, name="classic"), ["base"])
    assert [o.status for o in outcomes] == ["planned"]


def test_a_dry_run_without_the_base_image_plans_everything(cat: Catalog) -> None:
    outcomes = dry_run(cat, FakeEngine(), FakeBuilder(FakeEngine()), ["scipy"])
    assert [o.status for o in outcomes] == ["planned", "planned"]


# --- run -------------------------------------------------------------------------------------

def test_a_build_runs_parents_first_and_tags_after_success(cat: Catalog) -> None:
    engine = engine_with_base(cat)
    engine.outputs["python3 -c 'import numpy; print(numpy.__version__)'"] = "2.1.3\n"
    builder = FakeBuilder(engine)
    outcomes = build_all(cat, engine, builder, ["scipy"])
    assert builder.built == ["base", "scipy"]
    scipy = outcomes["scipy"]
    assert scipy.status == "built" and scipy.size == 1000
    tags = [t.rpartition(":")[2] for t in scipy.tags]
    assert tags[0] == "latest" and "numpy-2.1.3" in tags and "python-1.0.0" in tags
    assert all(engine.refs[t] == scipy.image_id for t in scipy.tags)
    request = builder.requests[1]
    assert request.labels["io.imagekit.parent-digest"] == outcomes["base"].image_id
    assert "org.opencontainers.image.version" not in request.labels
    assert builder.requests[0].labels["io.imagekit.parent-digest"] == BASE_ID


def test_an_unchanged_image_is_not_rebuilt(cat: Catalog) -> None:
    engine = engine_with_base(cat)
    first = build_all(cat, engine, FakeBuilder(engine), ["scipy"])
    builder = FakeBuilder(engine)
    again = build_all(cat, engine, builder, ["scipy"])
    assert builder.requests == []
    assert [o.status for o in again.values()] == ["cached", "cached"]
    assert again["scipy"].image_id == first["scipy"].image_id
    assert again["scipy"].retagged == []
    assert set(again["scipy"].tags) == set(first["scipy"].tags)


def test_a_rebuilt_parent_rebuilds_its_children(cat: Catalog) -> None:
    engine = engine_with_base(cat)
    build_all(cat, engine, FakeBuilder(engine), ["scipy"])
    engine.add("sha256:" + "e" * 64, cat.base.image)  # a new base image
    builder = FakeBuilder(engine)
    build_all(cat, engine, builder, ["scipy"])
    assert builder.built == ["base", "scipy"]


def test_a_stale_label_is_not_a_cache_hit(cat: Catalog) -> None:
    engine = engine_with_base(cat)
    engine.add("sha256:old", cat.ref("base"), labels={CACHE_LABEL: "0" * 64})
    builder = FakeBuilder(engine)
    build_all(cat, engine, builder, ["base"])
    assert builder.built == ["base"]


def test_children_of_a_failed_parent_are_skipped_and_others_go_on(cat: Catalog) -> None:
    engine = engine_with_base(cat)
    builder = FakeBuilder(engine, fail=("scipy",))
    seen: list[tuple[str, str]] = []

    def status(outcome: Outcome) -> None:
        seen.append((outcome.image, outcome.status))

    outcomes = {o.image: o for o in run_builds(
        cat, engine, builder, ["pytorch", "scipy-hpc", "r"],
        on_line=lambda image, text: None, on_status=status)}
    assert outcomes["scipy"].status == "failed"
    assert "build failed at [2/3] RUN true" in outcomes["scipy"].error
    for child in ("scipy-hpc", "pytorch"):
        assert outcomes[child].status == "skipped"
        assert outcomes[child].error == "parent scipy did not build"
    assert outcomes["r"].status == "built"
    assert "scipy-hpc" not in builder.built and "pytorch" not in builder.built
    assert not any(ref.startswith(cat.repository("scipy") + ":") for ref in engine.refs)
    assert seen[:2] == [("base", "building"), ("base", "built")]
    assert ("scipy-hpc", "skipped") in seen and ("scipy-hpc", "building") not in seen


class EngineFailing(FakeBuilder):
    """A builder whose engine answers one image's build with an error of its own (the SDK's,
    or the HTTP library's under it), not imagekit's."""

    def __init__(self, engine: FakeEngine, error: Exception, image: str) -> None:
        super().__init__(engine)
        self.error, self.image = error, image

    def build(self, request: BuildRequest, progress: Progress) -> str:
        if request.name == self.image:
            raise self.error
        return super().build(request, progress)


@pytest.mark.parametrize("error", [
    docker.errors.APIError("500 Server Error for http+docker://localhost/v1.41/build: "
                           "Internal Server Error (\"failed to mount overlay\")"),
    requests.ConnectionError("('Connection aborted.', RemoteDisconnected('Remote end "
                             "closed connection without response'))"),
])
def test_an_engines_own_error_fails_that_image_and_the_others_go_on(
        cat: Catalog, error: Exception) -> None:
    engine = engine_with_base(cat)
    outcomes = build_all(cat, engine, EngineFailing(engine, error, "scipy"), ["scipy", "r"])
    assert outcomes["scipy"].status == "failed" and outcomes["r"].status == "built"
    said = outcomes["scipy"].error
    assert said and len(said.splitlines()) == 1, said
    assert cat.ref("scipy") not in engine.refs


def test_a_failed_rebuild_moves_no_tag(cat: Catalog) -> None:
    engine = engine_with_base(cat)
    before = build_all(cat, engine, FakeBuilder(engine), ["scipy"])["scipy"].image_id
    failing = FakeBuilder(engine, fail=("scipy",))
    outcome = build_all(cat, engine, failing, ["scipy"], force=True)["scipy"]
    assert outcome.status == "failed"
    assert engine.refs[cat.ref("scipy")] == before


def test_a_missing_base_image_fails_the_root_with_what_to_do(cat: Catalog) -> None:
    outcomes = build_all(cat, FakeEngine(), FakeBuilder(FakeEngine()), ["scipy"])
    assert outcomes["base"].status == "failed"
    assert "run `imagekit base`" in outcomes["base"].error
    assert outcomes["scipy"].status == "skipped"


def test_a_version_tag_that_prints_nothing_fails_the_build(cat: Catalog) -> None:
    engine = engine_with_base(cat)
    engine.outputs["jupyter lab --version"] = "\n"
    outcome = build_all(cat, engine, FakeBuilder(engine), ["base"])["base"]
    assert outcome.status == "failed"
    assert "version tag lab" in outcome.error and "printed nothing" in outcome.error


def test_a_version_tag_that_is_not_a_version_fails_the_build_and_moves_no_tag(
        cat: Catalog) -> None:
    """A tagger whose first line is a log line (code-server's on its first run) would give a
    new tag at every build: the build fails, naming the stack file and the tagger."""
    engine = engine_with_base(cat)
    before = build_all(cat, engine, FakeBuilder(engine), ["base"])["base"].image_id
    engine.outputs["jupyter lab --version"] = (
        "[2026-12-05T03:40:54.806Z] info  Wrote default config file\n4.3.5\n")
    outcome = build_all(cat, engine, FakeBuilder(engine), ["base"], force=True)["base"]
    assert outcome.status == "failed"
    assert "base.yaml: version_tags[1] (lab)" in outcome.error
    assert "is not a version" in outcome.error
    assert engine.refs[cat.ref("base")] == before
    assert not [ref for ref in engine.refs if "2026-12-05T03" in ref]


@pytest.mark.parametrize("printed", ["3.11.2", "4.3.5", "2.9.1", "13.2", "v1.2.0",
                                     "2.1.0rc1", "4.96.4", "1.0.0-beta.2"])
def test_versions_are_versions(printed: str) -> None:
    assert looks_like_version(printed)


@pytest.mark.parametrize("printed", ["[2026-12-05T03:40:54.806Z]", "info", "",
                                     "4.96.4 abc with Code 1.96.4", "2026-12-05T03:40:54Z",
                                     "x" * 65])
def test_log_lines_are_not_versions(printed: str) -> None:
    assert not looks_like_version(printed)


# --- what a build is given -----------------------------------------------------------------

def test_proxies_are_build_args_in_both_spellings(cat: Catalog) -> None:
    site = with_site(cat, proxy=Proxy(http="http://proxy:3128", no_proxy="localhost"))
    assert build_args(site) == {"HTTP_PROXY": "http://proxy:3128",
                                "http_proxy": "http://proxy:3128",
                                "NO_PROXY": "localhost", "no_proxy": "localhost"}
    assert build_args(cat) == {}


def test_package_indexes_are_secrets(cat: Catalog) -> None:
    site = with_site(cat, pip_index_url="https://a:b@pypi.example.org/simple",
                     pip_extra_index_url="https://extra.example.org/simple")
    assert secrets(site) == {"pip_index_url": "https://a:b@pypi.example.org/simple",
                             "pip_extra_index_url": "https://extra.example.org/simple"}
    assert secrets(cat) == {}


def test_tags_are_sanitised() -> None:
    assert sanitize_tag("torch-2.3.0+cpu") == "torch-2.3.0-cpu"
    assert sanitize_tag("code-server-4.9.1 abc") == "code-server-4.9.1-abc"
    assert sanitize_tag("...") == "unknown"
    assert len(sanitize_tag("x" * 300)) == 128


def test_an_outcome_is_plain_data() -> None:
    outcome = Outcome("scipy", "r/scipy:latest", "cached", retagged=["r/scipy:v1"])
    assert outcome.as_dict()["retagged"] == ["r/scipy:v1"]
