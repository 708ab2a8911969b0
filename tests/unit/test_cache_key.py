"""Given a catalog, when an input of a build changes, then the cache key says so.

Everything that makes the built image different changes the key; what only names the image
(catalog and image tags) or only unlocks a package source (a password) does not. A cached
image gets a newly added tag without a rebuild.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import pytest

from imagekit import build
from imagekit.build import (
    BUILT_BY_LABEL,
    CACHE_LABEL,
    TREE_LABEL,
    KeyInputs,
    PlannedBuild,
    build_labels,
    key_inputs,
)
from imagekit.ci.plan import make_plan
from imagekit.engine.context import assemble
from imagekit.model import Catalog
from imagekit.resolve import load_catalog
from imagekit.schema import Proxy
from tests.unit.fakes import (
    FakeBuilder,
    build_all,
    engine_with_base,
    wheel_bytes,
    with_site,
    without_wheelhouse,
)

PARENT = "sha256:" + "a" * 64
OTHER_PARENT = "sha256:" + "c" * 64
SECRET = "s3cr3t-Pa55"


def key(catalog: Catalog, name: str = "scipy", builder: str = "buildkit",
        parent: str = PARENT) -> str:
    return inputs(catalog, name, builder, parent).digest()


def inputs(catalog: Catalog, name: str = "scipy", builder: str = "buildkit",
           parent: str = PARENT) -> KeyInputs:
    return key_inputs(catalog, assemble(catalog, catalog.images[name]), parent, builder)


@pytest.fixture
def cat(catalog: Catalog, tmp_path: Path) -> Catalog:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    return without_wheelhouse(catalog, wheels)


def load(project: Path) -> Catalog:
    wheels = project / "wheels"
    wheels.mkdir(exist_ok=True)
    return without_wheelhouse(load_catalog(project / "catalog.yaml"), wheels)


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


# --- the key and its inputs ---------------------------------------------------------------

def test_the_same_inputs_give_the_same_key(cat: Catalog) -> None:
    assert key(cat) == key(cat)
    assert re.fullmatch(r"[0-9a-f]{64}", key(cat))


def test_the_inputs_are_one_explicit_list() -> None:
    assert [f.name for f in dataclasses.fields(KeyInputs)] == [
        "context", "parent_id", "builder", "imagekit", "build_args", "site"]


def test_every_site_setting_that_reaches_the_build_is_an_input(cat: Catalog) -> None:
    assert [name for name, _ in inputs(cat).site] == [
        "apt_mirror", "pip_index_url", "pip_extra_index_url", "npm_registry",
        "proxy.http", "proxy.https", "proxy.no_proxy"]


@pytest.mark.parametrize("name", [f.name for f in dataclasses.fields(KeyInputs)])
def test_each_input_changes_the_key(cat: Catalog, name: str) -> None:
    before = inputs(cat)
    value = getattr(before, name)
    changed: Any = (*value, ("X", "y")) if isinstance(value, tuple) else value + "x"
    assert dataclasses.replace(before, **{name: changed}).digest() != before.digest()


SITE_CHANGES = {
    "pip index URL": {"pip_index_url": "https://pypi.example.org/simple"},
    "extra index URL": {"pip_extra_index_url": "https://download.pytorch.org/whl/cpu"},
    "npm registry": {"npm_registry": "https://npm.example.org"},
    "apt mirror": {"apt_mirror": "http://mirror.example.org/debian"},
    "proxy (build args)": {"proxy": Proxy(http="http://proxy.example.org:3128")},
    "no_proxy (build args)": {"proxy": Proxy(no_proxy="localhost,.example.org")},
}


@pytest.mark.parametrize("change", SITE_CHANGES.values(), ids=SITE_CHANGES.keys())
def test_a_package_source_changes_the_key(cat: Catalog, change: dict[str, object]) -> None:
    assert key(with_site(cat, **change)) != key(cat)


def test_a_different_package_index_changes_the_key(cat: Catalog) -> None:
    one = with_site(cat, pip_index_url="https://one.example.org/simple")
    two = with_site(cat, pip_index_url="https://two.example.org/simple")
    assert key(one) != key(two)


ROTATIONS = {
    "pip index": ("pip_index_url", "https://alice:{}@pypi.example.org/simple"),
    "extra index": ("pip_extra_index_url", "https://__token__:{}@gitlab.example.org/simple"),
    "npm registry": ("npm_registry", "https://bob:{}@npm.example.org/"),
    "apt mirror": ("apt_mirror", "http://carol:{}@mirror.example.org/debian"),
}


@pytest.mark.parametrize(("field", "url"), ROTATIONS.values(), ids=ROTATIONS.keys())
def test_a_rotated_password_does_not_change_the_key(cat: Catalog, field: str,
                                                    url: str) -> None:
    old = with_site(cat, **{field: url.format("old-password")})
    new = with_site(cat, **{field: url.format(SECRET)})
    assert key(old) == key(new)


def test_a_proxy_password_does_not_change_the_key(cat: Catalog) -> None:
    old = with_site(cat, proxy=Proxy(http="http://dave:old-password@proxy:3128",
                                     https="http://dave:old-password@proxy:3128"))
    new = with_site(cat, proxy=Proxy(http=f"http://dave:{SECRET}@proxy:3128",
                                     https=f"http://dave:{SECRET}@proxy:3128"))
    assert key(old) == key(new)
    assert ("HTTP_PROXY", "http://proxy:3128") in inputs(new).build_args


def test_no_credential_reaches_the_inputs_or_a_label(cat: Catalog) -> None:
    site = with_site(
        cat, pip_index_url=f"https://alice:{SECRET}@pypi.example.org/simple",
        pip_extra_index_url=f"https://{SECRET}@extra.example.org/simple",
        npm_registry=f"https://bob:{SECRET}@npm.example.org/",
        apt_mirror=f"http://carol:{SECRET}@mirror.example.org/debian",
        proxy=Proxy(http=f"http://dave:{SECRET}@proxy:3128"),
    )
    found = inputs(site)
    assert SECRET not in json.dumps(dataclasses.asdict(found))
    assert dict(found.site)["pip_index_url"] == "https://pypi.example.org/simple"
    planned = PlannedBuild(site.images["scipy"], "ref", ("ref",),
                           assemble(site, site.images["scipy"]), None, found)
    labels = build_labels(planned, build._now(), "docker 20.10.24")
    assert not any(SECRET in value for value in labels.values())


def test_the_builder_changes_the_key(cat: Catalog) -> None:
    assert key(cat, builder="buildkit") != key(cat, builder="classic")


def test_the_parent_image_changes_the_key(cat: Catalog) -> None:
    assert key(cat, parent=PARENT) != key(cat, parent=OTHER_PARENT)


def test_the_imagekit_version_changes_the_key(cat: Catalog,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    before = key(cat)
    monkeypatch.setattr(build, "__version__", "99.0.0")
    assert key(cat) != before


@pytest.mark.parametrize(("path", "old", "new"), [
    ("Dockerfile", b"WORKDIR", b"workdir"),
    ("pip/requirements.lock", b"numpy==", b"numpy>="),
])
def test_a_recipe_or_lock_byte_changes_the_key(cat: Catalog, path: str, old: bytes,
                                               new: bytes) -> None:
    image = cat.images["scipy"]
    context = assemble(cat, image)
    files = dict(context.files)
    assert old in files[path]
    files[path] = files[path].replace(old, new, 1)
    edited = dataclasses.replace(context, files=files)
    assert (key_inputs(cat, edited, PARENT, "buildkit").digest()
            != key_inputs(cat, context, PARENT, "buildkit").digest())


def test_a_description_changes_the_key_as_it_is_a_label(cat: Catalog) -> None:
    # The description is the image's org.opencontainers.image.description LABEL: a new one
    # is a different image, so it is a rebuild (a label-only layer, cheap for the engine).
    image = cat.images["scipy"]
    relabelled = dataclasses.replace(image, description="Something else entirely.")
    assert (key_inputs(cat, assemble(cat, relabelled), PARENT, "buildkit").digest()
            != key(cat))


def test_a_layer_file_content_changes_the_key(project: Path) -> None:
    before = key(load(project), "base")
    (project / "stacks/files/base/jupyter_server_config.py").write_text("c = 1\n")
    assert key(load(project), "base") != before


def test_a_layer_file_mode_changes_the_key_and_its_mtime_does_not(project: Path) -> None:
    source = project / "stacks/files/base/jupyter_server_config.py"
    before = key(load(project), "base")
    source.touch()
    assert key(load(project), "base") == before
    source.chmod(0o755)
    assert key(load(project), "base") != before


def test_the_ca_bundle_content_changes_the_root_key(cat: Catalog, tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\nONE\n")
    site = with_site(cat, ca_bundle=str(bundle))
    before_base, before_scipy = key(site, "base"), key(site, "scipy")
    bundle.write_text("-----BEGIN CERTIFICATE-----\nTWO\n")
    assert key(site, "base") != before_base
    # A child gets the bundle from its parent: the parent's new image ID rebuilds it.
    assert key(site, "scipy") == before_scipy


def test_a_wheel_the_image_installs_changes_the_key(cat: Catalog) -> None:
    wheels = Path(cat.site.find_links or "")
    wheel = wheels / "numpy-2.0.0-cp311-cp311-linux_x86_64.whl"
    wheel.write_bytes(wheel_bytes("numpy", "one"))
    before = key(cat)
    # Only the wheels of the projects the image installs are in its context.
    (wheels / "unrelated-1.0-py3-none-any.whl").write_bytes(wheel_bytes("unrelated"))
    assert key(cat) == before
    wheel.write_bytes(wheel_bytes("numpy", "two"))
    assert key(cat) != before


def test_adding_a_catalog_tag_does_not_change_any_key(project: Path) -> None:
    before = load(project)
    edit(project / "catalog.yaml", "tags: [latest]", "tags: [latest, stable]")
    after = load(project)
    assert after.images["scipy"].tags == ("latest", "stable")
    for name in before.images:
        assert key(after, name) == key(before, name), name


def test_adding_an_image_tag_does_not_change_its_key(project: Path) -> None:
    before = load(project)
    edit(project / "catalog.yaml", "  - stack: scipy\n", "  - stack: scipy\n    tags: [v1]\n")
    after = load(project)
    assert after.images["scipy"].tags == ("latest", "v1")
    assert key(after) == key(before)


def test_build_labels_are_the_key_the_time_and_functions_of_the_inputs(cat: Catalog) -> None:
    found = inputs(cat)
    keys, contexts = build.tree_keys(cat, cat.closure(["scipy"]))
    planned = PlannedBuild(cat.images["scipy"], "ref", ("ref",), contexts["scipy"], None,
                           found, keys["scipy"])
    built_by = "docker 28.5.2, BuildKit via `docker buildx build`, containerd image store"
    labels = build_labels(planned, build._now(), built_by)
    assert set(labels) == {CACHE_LABEL, TREE_LABEL, "io.imagekit.parent-digest",
                           "io.imagekit.recipe-hash", "io.imagekit.version",
                           "org.opencontainers.image.created", BUILT_BY_LABEL}
    # Who built it, as the engine said: a fact of the build, like its time.
    assert labels[BUILT_BY_LABEL] == built_by
    assert labels[CACHE_LABEL] == found.digest()
    # The tree key a runner shares the image under is the one `imagekit plan` names.
    assert labels[TREE_LABEL] == keys["scipy"] == make_plan(cat).image("scipy").key
    assert labels["io.imagekit.parent-digest"] == found.parent_id
    assert labels["io.imagekit.version"] == found.imagekit
    # A tag is not content: the image carries none (tags move without a rebuild).
    assert "latest" not in labels.values()


# --- run_builds: retag without rebuilding ---------------------------------------------------

def test_a_cached_image_gets_a_new_catalog_tag_and_is_not_rebuilt(project: Path) -> None:
    first = load(project)
    engine = engine_with_base(first)
    built = build_all(first, engine, FakeBuilder(engine), ["scipy"])
    assert [o.status for o in built.values()] == ["built", "built"]
    scipy_id = built["scipy"].image_id
    computed = {t for t in built["scipy"].tags if t.rpartition(":")[2].startswith("numpy-")}

    edit(project / "catalog.yaml", "tags: [latest]", "tags: [latest, stable]")
    second = load(project)
    builder = FakeBuilder(engine)
    again = build_all(second, engine, builder, ["scipy"])

    assert builder.requests == []
    assert [o.status for o in again.values()] == ["cached", "cached"]
    stable = second.ref("scipy", "stable")
    assert engine.refs[stable] == scipy_id
    assert again["scipy"].retagged == [stable]
    assert again["base"].retagged == [second.ref("base", "stable")]
    # The computed tags stay as they are: they depend only on the image's content.
    assert computed <= set(again["scipy"].tags)
    assert stable in again["scipy"].tags


def test_a_new_image_tag_is_added_without_a_rebuild(project: Path) -> None:
    first = load(project)
    engine = engine_with_base(first)
    build_all(first, engine, FakeBuilder(engine), ["scipy"])
    edit(project / "catalog.yaml", "  - stack: scipy\n", "  - stack: scipy\n    tags: [v1]\n")
    builder = FakeBuilder(engine)
    again = build_all(load(project), engine, builder, ["scipy"])
    assert builder.requests == []
    assert again["scipy"].retagged == [first.ref("scipy", "v1")]
    assert again["base"].retagged == []


def test_a_replaced_first_tag_still_finds_the_cached_root(project: Path) -> None:
    first = load(project)
    engine = engine_with_base(first)
    base_id = build_all(first, engine, FakeBuilder(engine), ["base"])["base"].image_id
    edit(project / "catalog.yaml", "tags: [latest]", "tags: [stable, latest]")
    builder = FakeBuilder(engine)
    again = build_all(load(project), engine, builder, ["base"])
    assert builder.requests == []
    assert again["base"].status == "cached"
    assert engine.refs[first.ref("base", "stable")] == base_id


def test_a_changed_index_or_builder_rebuilds_and_a_rotated_password_does_not(
        cat: Catalog) -> None:
    engine = engine_with_base(cat)
    index = "https://alice:{}@pypi.example.org/simple"
    site = with_site(cat, pip_index_url=index.format("one"))
    build_all(site, engine, FakeBuilder(engine), ["scipy"])

    rotated = FakeBuilder(engine)
    build_all(with_site(cat, pip_index_url=index.format("two")), engine, rotated, ["scipy"])
    assert rotated.built == []

    moved = FakeBuilder(engine)
    build_all(with_site(cat, pip_index_url="https://pypi.example.net/simple"), engine, moved,
              ["scipy"])
    assert moved.built == ["base", "scipy"]

    classic = FakeBuilder(engine, name="classic")
    build_all(with_site(cat, pip_index_url="https://pypi.example.net/simple"), engine, classic,
              ["scipy"])
    assert classic.built == ["base", "scipy"]


def test_force_rebuilds_what_was_asked_for_and_takes_parents_from_the_cache(
        cat: Catalog) -> None:
    engine = engine_with_base(cat)
    build_all(cat, engine, FakeBuilder(engine), ["scipy"])
    builder = FakeBuilder(engine)
    outcomes = build_all(cat, engine, builder, ["scipy"], force=True)
    assert builder.built == ["scipy"]
    assert [o.status for o in outcomes.values()] == ["cached", "built"]
