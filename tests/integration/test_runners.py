"""CI at scale, for real on one machine: two runners, each an empty Docker engine of its
own, share one registry, which also holds the site's Debian base (as a site keeps it for
its runners). Runner A builds and pushes `base`; runner B builds `scipy` on
`base` pulled by digest, tests and pushes it; runner A publishes the catalog from what the
registry holds. A third empty engine does the same in one place, as `imagekit publish`
always did: both catalogs must name the same images, parents, tags and test results.

Each runner has its own checkout (a copy of the catalog), so nothing but the registry
passes between them: not the images, not the test records.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from imagekit.published.catalog import PublishedCatalog, read
from tests.integration import background, suite
from tests.integration.conftest import imagekit
from tests.integration.registry import LocalRegistry, fresh_registry
from tests.integration.runners import TIMES, Runner, checkout, mirror_base

pytestmark = [pytest.mark.integration, pytest.mark.docker_engine]


@dataclass
class Flows:
    registry: LocalRegistry
    a: Runner
    b: Runner
    a_catalog: Path
    b_catalog: Path
    c_catalog: Path
    stop: Callable[[], None]  # the runners and the registry
    outcomes: dict[str, Any] = field(default_factory=dict)

    def ref(self, image: str) -> str:
        return suite.ref(image, "runners", registry=self.registry.address)

    def repository(self, image: str) -> str:
        return suite.repository(image, "runners", registry=self.registry.address)


def _run(runner: Runner, step: str, *args: str, catalog: Path) -> Any:
    started = time.monotonic()
    result = imagekit(*args, catalog=catalog, env=runner.env)
    TIMES[f"{runner.name}: {step}"] = round(time.monotonic() - started, 1)
    return json.loads(result.stdout) if "--json" in args else result.stdout + result.stderr


def beside(root: Path) -> Flows:
    """The two runners' part, run beside the rest of the suite (tests/integration/
    background.py): each an empty engine of its own, sharing a registry of their own."""
    address = suite.free_address()
    registries = fresh_registry(root / "registry", address)
    registry = next(registries)
    runners = [Runner(n, root / f"engine-{n}", s) for n, s in (("a", 41), ("b", 42))]

    def stop() -> None:
        for runner in runners:
            runner.stop()
        next(registries, None)

    try:
        for runner in runners:
            runner.start()
        a, b = runners
        mirrored = mirror_base(address)
        found = Flows(registry, a, b, checkout(root / "checkout-a", "runners", mirrored),
                      checkout(root / "checkout-b", "runners", mirrored),
                      checkout(root / "checkout-c", "single", mirrored), stop)
        o = found.outcomes
        # Runner A: base on the site's Debian base pulled from its registry, tested, pushed
        # under its tree tag.
        o["a-build"] = _run(a, "build base", "build", "base", "--from-registry", "--json",
                            catalog=found.a_catalog)
        _run(a, "test base", "test", "base", catalog=found.a_catalog)
        o["a-push"] = _run(a, "push base", "push", "base", "--json", catalog=found.a_catalog)
        # Runner B, empty: base pulled by digest, scipy built on it, tested, pushed.
        o["b-build"] = _run(b, "build scipy", "build", "scipy", "--from-registry", "--json",
                            catalog=found.b_catalog)
        _run(b, "test scipy", "test", "scipy", catalog=found.b_catalog)
        o["b-push"] = _run(b, "push scipy", "push", "scipy", "--json", catalog=found.b_catalog)
        # Runner A again, CI's last job: the catalog from the registry.
        o["publish"] = _run(a, "publish --from-registry", "publish", "--from-registry", "base",
                            "scipy", "--json", catalog=found.a_catalog)
        # Runner A, a later run with nothing changed: scipy is pulled, not built. Then,
        # forced, with scipy gone from its engine: every layer from the registry's cache.
        o["again"] = _run(a, "build scipy (unchanged)", "build", "scipy", "--from-registry",
                          "--json", catalog=found.a_catalog)
        ref = found.ref("scipy")
        o["pulled-layers"] = a.client.images.get(ref).attrs["RootFS"]["Layers"]
        a.client.images.remove(ref, force=True)
        o["forced-log"] = _run(a, "build scipy --force (registry cache)", "build", "scipy",
                               "--from-registry", "--force", "--format", "docker", "--plain",
                               catalog=found.a_catalog)
        o["forced-layers"] = a.client.images.get(ref).attrs["RootFS"]["Layers"]
        # One engine doing it all, as `imagekit publish` always did: the suite's own, whose
        # cache already holds base and scipy; its catalog is compared with the runners'. The
        # comparison is of what gets published, not of time (a cold single engine took 204
        # s here against the runners' 225 s, measured once).
        c = Runner("c", root / "engine-c", 0)
        _run(c, "build base scipy", "build", "scipy", "--plain", catalog=found.c_catalog)
        _run(c, "test base scipy", "test", "base", "scipy", catalog=found.c_catalog)
        o["single"] = _run(c, "publish base scipy", "publish", "base", "scipy", "--json",
                           catalog=found.c_catalog)
        return found
    except BaseException:
        stop()
        raise


@pytest.fixture(scope="module")
def flows(client: Any) -> Iterator[Flows]:
    found: Flows | None = None
    try:
        found = background.result(__name__)
        yield found
    finally:
        if found is not None:
            found.stop()
        for image in client.images.list():
            if any("/single/" in tag for tag in image.tags):
                client.images.remove(image.id, force=True)
            for tag in image.tags:
                if "/mirror/debian:" in tag:
                    client.images.remove(tag)  # the tag only: the base stays
        background.finish(__name__)


def _catalog(path: Path) -> PublishedCatalog:
    return read(path.parent / "dist" / "catalog.json")


def _status(build: dict[str, Any]) -> dict[str, str]:
    return {o["image"]: o["status"] for o in build["images"]}


def test_runner_b_pulls_base_by_digest_and_builds_only_scipy(flows: Flows) -> None:
    o = flows.outcomes
    assert _status(o["a-build"]) == {"base": "built"}
    assert _status(o["b-build"]) == {"base": "pulled", "scipy": "built"}
    [pushed_base] = o["a-push"]["images"]
    ref = flows.ref("base")
    # The very image A built: same ID on both engines, never rebuilt on B.
    assert flows.b.images()[ref] == flows.a.images()[ref]
    assert pushed_base["reference"].startswith(f"{flows.repository('base')}@sha256:")


def test_the_catalog_from_the_registry_matches_a_single_engine_publish(flows: Flows) -> None:
    runners, single = _catalog(flows.a_catalog), _catalog(flows.c_catalog)
    assert [i.name for i in runners.images] == [i.name for i in single.images] == [
        "base", "scipy"]

    def moving(tags: list[str]) -> set[str]:
        return {t for t in tags if not t.startswith("id-")}

    for mine, theirs in zip(runners.images, single.images, strict=True):
        assert mine.parent == theirs.parent
        assert moving(mine.tags) == moving(theirs.tags), mine.name
        assert (mine.tested.status, mine.tested.passed, mine.tested.failed,
                mine.tested.checks) == (theirs.tested.status, theirs.tested.passed,
                                        theirs.tested.failed, theirs.tested.checks)
        assert mine.tested.status == "passed"
        assert mine.packages == theirs.packages, mine.name  # read from each image
    # base's digest is the one runner A pushed: B pulled it, nobody rebuilt it.
    [pushed_base] = flows.outcomes["a-push"]["images"]
    assert runners.image("base").reference == pushed_base["reference"]
    [pushed_scipy] = flows.outcomes["b-push"]["images"]
    assert runners.image("scipy").reference == pushed_scipy["reference"]
    assert runners.image("scipy").sif is not None  # B converted and pushed its SIF


def test_publish_moved_the_tags_users_follow_only_at_the_end(flows: Flows) -> None:
    tags = flows.registry.tags("runners/scipy")
    assert "latest" in tags and any(t.startswith("tree-") for t in tags)
    digest = flows.registry.manifest("runners/scipy", "latest")[0]
    assert _catalog(flows.a_catalog).image("scipy").digest == digest
    # The exports follow the catalog, as with a single-engine publish.
    exports = sorted(p.name for p in (flows.a_catalog.parent / "dist/exports").iterdir())
    assert exports == sorted(p.name for p in (flows.c_catalog.parent / "dist/exports").iterdir())


def test_an_unchanged_image_is_pulled_and_a_forced_build_reuses_the_registry_cache(
        flows: Flows) -> None:
    o = flows.outcomes
    assert _status(o["again"]) == {"scipy": "pulled"}
    log = o["forced-log"]
    assert f"importing cache manifest from {flows.ref('scipy')}" in log, log
    # Every layer came from the registry's inline cache: the same layers, nothing run.
    assert o["forced-layers"] == o["pulled-layers"]
