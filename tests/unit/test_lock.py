"""Given the shipped locks, when an input of a lock changes, then `lock --check` and builds see
it; what does not decide the resolution (a password, a sibling stack) leaves locks current.
No network: resolving for real is in the integration tests (wheelhouse, credentials,
reproducibility)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from imagekit import lock, lockfile
from imagekit.errors import ImagekitError
from imagekit.model import Catalog, Stack
from imagekit.resolve import load_catalog
from imagekit.schema import Proxy
from tests.unit.fakes import with_site

ROOT = Path(__file__).resolve().parents[2]


def stale(catalog: Catalog) -> set[str]:
    return {s.stack.name for s in lock.check(catalog) if s.state != "current"}


def test_the_shipped_locks_are_current_and_cover_every_stack_with_pip(catalog: Catalog) -> None:
    assert stale(catalog) == set()
    assert {s.name for s in lock.lockable(catalog)} == {
        "base", "scipy", "pytorch", "pytorch-cuda", "vscode", "rstudio", "pyspark"}
    # r adds no pip package of its own: rstudio is resolved against base's lock.
    parent = lock.locked_ancestor(catalog, catalog.stacks["rstudio"])
    assert parent is not None and parent.name == "base"


def test_a_child_lock_keeps_every_version_its_parent_locked(catalog: Catalog) -> None:
    for stack in lock.lockable(catalog):
        parent = lock.locked_ancestor(catalog, stack)
        if parent is None:
            continue
        assert stack.lock is not None and parent.lock is not None
        assert set(parent.lock.pins) <= set(stack.lock.pins), stack.name


def test_a_new_index_host_makes_every_lock_stale_and_a_new_password_does_not(
        catalog: Catalog) -> None:
    url = "https://alice:{}@pypi.example.org/simple"
    one = dataclasses.replace(catalog, site=catalog.site.model_copy(
        update={"pip_index_url": url.format("one")}))
    stamped = with_site(one)  # as if locked from that index
    assert stale(stamped) == set()
    rotated = dataclasses.replace(stamped, site=stamped.site.model_copy(
        update={"pip_index_url": url.format("two")}))
    assert stale(rotated) == set()
    moved = dataclasses.replace(stamped, site=stamped.site.model_copy(
        update={"pip_index_url": "https://pypi.example.net/simple"}))
    assert stale(moved) == {s.name for s in lock.lockable(catalog)}
    offline = dataclasses.replace(stamped, site=stamped.site.model_copy(
        update={"pip_no_index": True}))
    assert stale(offline) == {s.name for s in lock.lockable(catalog)}


def test_a_second_platform_makes_the_locks_of_the_stacks_built_for_it_stale(
        catalog: Catalog) -> None:
    both = dataclasses.replace(catalog, platforms=("linux/amd64", "linux/arm64"),
                               images={n: dataclasses.replace(
                                   i, platforms=("linux/amd64",) if n == "pytorch-cuda"
                                   else ("linux/amd64", "linux/arm64"))
                                   for n, i in catalog.images.items()})
    # Each lock must now also hold for arm64: all but pytorch-cuda's, which stays amd64's.
    assert stale(both) == {s.name for s in lock.lockable(catalog)} - {"pytorch-cuda"}
    assert lock.platforms_of(both, catalog.stacks["pytorch-cuda"]) == ["linux/amd64"]
    assert lock.target(both, "linux/arm64").platform == "aarch64-manylinux_2_36"


def test_a_relocked_parent_makes_its_descendants_stale_and_nothing_else(
        project: Path) -> None:
    path = project / "stacks/scipy.lock"
    path.write_text(path.read_text() + "\n")
    assert stale(load_catalog(project / "catalog.yaml")) == {"pytorch", "pytorch-cuda",
                                                             "pyspark"}


def test_a_stale_lock_stops_the_recipe_of_its_stack_images_only(project: Path) -> None:
    stack = project / "stacks/pyspark.yaml"
    stack.write_text(stack.read_text().replace("  - pyarrow\n", "  - pyarrow\n  - polars\n"))
    catalog = load_catalog(project / "catalog.yaml")
    with pytest.raises(ImagekitError) as info:
        lock.for_image(catalog, catalog.images["pyspark"])
    (problem,) = info.value.problems
    assert problem.file == project / "stacks/pyspark.lock"
    assert "imagekit lock pyspark" in problem.message
    assert lock.for_image(catalog, catalog.images["scipy"]) is not None
    # A profile image inherits its stack image's venv and installs no lock of its own.
    assert lock.for_image(catalog, catalog.images["scipy-hpc"]) is None


def test_uv_itself_is_pinned_with_its_hashes(catalog: Catalog) -> None:
    base = catalog.stacks["base"].lock
    assert base is not None
    pin = lock.uv_pin(base)
    first, *hashes = pin.rstrip("\n").split("\n")
    assert first.startswith("uv==") and first.endswith(" \\")
    assert hashes and all(h.startswith("    --hash=sha256:") for h in hashes)
    assert not hashes[-1].endswith("\\")
    assert ("uv", first[4:-2]) in base.pins


@pytest.mark.parametrize(("text", "line", "says"), [
    ("# inputs: sha256:" + "a" * 64 + "\nsix==1.0\n", 2, "'name==version \\'"),
    ("# inputs: sha256:" + "a" * 64 + "\nsix==1.0 \\\n    --hash=md5:00\n", 3, "--hash=sha256:"),
    ("# inputs: sha256:" + "a" * 64 + "\n--index-url https://x/\n", 2, "name==version"),
    ("# inputs: sha256:" + "a" * 64 + "\nsix>=1.0 \\\n    --hash=sha256:" + "0" * 64 + "\n", 2,
     "name==version"),
    ("six==1.0 \\\n    --hash=sha256:" + "0" * 64 + "\n", None, "no inputs line"),
    ("# inputs: sha256:" + "a" * 64 + "\nsix==1.0 \\\n", 3, "--hash=sha256:"),
    ("# inputs: sha256:" + "a" * 64 + "\nsix==1.0 \\", None, "without hashes"),
])
def test_anything_but_what_lock_writes_is_refused_with_its_line(
        tmp_path: Path, text: str, line: int | None, says: str) -> None:
    path = tmp_path / "x.lock"
    path.write_text(text)
    with pytest.raises(ImagekitError) as info:
        lockfile.parse(path)
    (problem,) = info.value.problems
    assert problem.file == path and problem.line == line
    assert says in str(problem)


def test_the_target_is_the_base_suites_python(catalog: Catalog) -> None:
    target = lock.target(catalog)
    assert (target.python, target.platform) == ("3.11.2", "x86_64-manylinux_2_36")
    assert target.markers()["python_version"] == "3.11"
    assert catalog.base.bootstrap is not None
    trixie = dataclasses.replace(catalog, base=dataclasses.replace(
        catalog.base, bootstrap=catalog.base.bootstrap.model_copy(update={"suite": "trixie"})))
    with pytest.raises(ImagekitError, match="trixie"):
        lock.target(trixie)


def test_an_excluded_package_is_left_out_of_every_lock_below_the_stack_that_excludes_it(
        catalog: Catalog, project: Path) -> None:
    # base excludes rfc3987-syntax (jsonschema's format-nongpl extra): no lock holds it.
    for stack in lock.lockable(catalog):
        assert "rfc3987-syntax" in stack.pip_exclude_all, stack.name
        assert stack.lock is not None and "rfc3987-syntax" not in dict(stack.lock.pins)
    # Excluding one more package in scipy changes what scipy and its children resolve.
    path = project / "stacks/scipy.yaml"
    path.write_text(path.read_text() + "pip_exclude: [tqdm]\n")
    changed = load_catalog(project / "catalog.yaml")
    assert changed.stacks["pytorch"].pip_exclude_all == ("rfc3987-syntax", "tqdm")
    assert stale(changed) == {"scipy", "pytorch", "pytorch-cuda", "pyspark"}


def test_locking_a_parent_and_its_child_in_one_run_resolves_the_child_against_the_new_lock(
        project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # uv stands aside: each stack "resolves" to the pins it had, which is enough to see
    # which parent lock the child is resolved against and what the headers record.
    seen: dict[str, str | None] = {}

    def resolved(catalog: Catalog, stack: Stack, parent_lock: Path | None,
                 previous: str | None = None) -> str:
        seen[stack.name] = parent_lock.read_text() if parent_lock is not None else None
        assert stack.lock is not None
        return lockfile.pins_only(stack.lock.text)

    monkeypatch.setattr(lock, "resolve", resolved)
    path = project / "stacks/scipy.yaml"
    path.write_text(path.read_text() + "pip_exclude: [tqdm]\n")
    catalog = load_catalog(project / "catalog.yaml")
    written = [(s.name, p) for s, p in lock.write(catalog, ["pytorch", "scipy"])]
    assert written == [("scipy", project / "stacks/scipy.lock"),
                       ("pytorch", project / "stacks/pytorch.lock")]
    assert seen["pytorch"] == (project / "stacks/scipy.lock").read_text()
    after = load_catalog(project / "catalog.yaml")
    assert stale(after) == {"pytorch-cuda", "pyspark"}
    # Without its parent in the run, a child of a stale parent is refused, naming both.
    with pytest.raises(ImagekitError, match=r"stale: lock scipy first \(imagekit lock scipy "
                                            r"pyspark\)"):
        list(lock.write(catalog, ["pyspark"]))


def test_a_package_added_to_a_stack_is_locked_apart_and_a_current_lock_is_left_alone(
        project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # uv stands aside: it keeps every pin, and tabulate is pinned where a stack asks for it.
    tabulate = "tabulate==0.9.0 \\\n    --hash=sha256:" + "5" * 64 + "\n"
    resolved: list[str] = []

    def resolve(catalog: Catalog, stack: Stack, parent_lock: Path | None,
                previous: str | None = None) -> str:
        resolved.append(stack.name)
        assert stack.lock is not None
        pins = lockfile.pins_only(stack.lock.text).replace(tabulate, "")
        return pins + tabulate if "tabulate" in stack.pip_all else pins

    monkeypatch.setattr(lock, "resolve", resolve)
    path = project / "stacks/scipy.yaml"
    original_yaml, original_lock = path.read_text(), (project / "stacks/scipy.lock").read_text()
    path.write_text(original_yaml.replace("pip:\n", "pip:\n  - tabulate\n", 1))
    said = list(lock.lock_named(load_catalog(project / "catalog.yaml"), [], True))
    # Only scipy and the stacks below it are resolved again; the others are current.
    assert resolved == ["scipy", "pyspark", "pytorch", "pytorch-cuda"]
    count = len(lockfile.pin_set(original_lock)) + 1
    assert f"locked scipy: {count} packages in stacks/scipy.lock (1 added since it was " \
        "settled)" in said
    assert any(line.startswith("current base: stacks/base.lock matches") for line in said)
    after = load_catalog(project / "catalog.yaml")
    scipy = after.stacks["scipy"].lock
    assert scipy is not None and scipy.added == (("tabulate", "0.9.0"),)
    assert lockfile.settled_part(scipy.text) == lockfile.settled_part(original_lock)
    assert stale(after) == set()
    # A stack named is resolved again, current or not (a hand-edited lock is mended so).
    list(lock.lock_named(after, ["base"], False))
    assert resolved[-1] == "base"
    # --settle folds the added part in; removing the package gives back the lock it was.
    list(lock.lock_named(after, ["scipy"], False, settle=True))
    settled = load_catalog(project / "catalog.yaml").stacks["scipy"].lock
    assert settled is not None and settled.added == () and len(settled.pins) == count
    path.write_text(original_yaml)
    list(lock.lock_named(load_catalog(project / "catalog.yaml"), ["scipy"], False,
                         settle=True))
    assert (project / "stacks/scipy.lock").read_text() == original_lock


def test_uv_gets_the_sites_sources_credentials_in_its_environment_only(
        catalog: Catalog, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("UV_INDEX_URL", "https://callers.example/simple")
    monkeypatch.setenv("https_proxy", "http://callers-proxy:3128")
    site = catalog.site.model_copy(update={
        "pip_index_url": "https://alice:secret@pypi.example.org/simple",
        "proxy": Proxy(https="http://site-proxy:3128"), "ca_bundle": "/etc/site-ca.pem",
        "find_links": "/srv/wheels", "pip_no_index": True})
    env = lock._uv_environment(site)
    assert env["UV_INDEX_URL"] == "https://alice:secret@pypi.example.org/simple"
    assert env["HTTPS_PROXY"] == "http://site-proxy:3128" and "https_proxy" not in env
    assert env["SSL_CERT_FILE"] == "/etc/site-ca.pem"
    args = lock._source_args(site, tmp_path / "base.lock")
    assert args == ["--find-links", "/srv/wheels", "--no-index",
                    "--constraint", str(tmp_path / "base.lock")]
    assert not any("secret" in a for a in args)
    assert lock._source_args(catalog.site.model_copy(update={
        "find_links": None, "pip_no_index": False}), None) == []


def test_the_names_given_to_lock_are_stacks_or_images_standing_for_their_stacks(
        catalog: Catalog) -> None:
    assert lock.stacks_to_lock(catalog, ["scipy-hpc", "pytorch"]) == ["scipy", "pytorch"]
    assert lock.stacks_to_lock(catalog, ["nope"], all_=True) == [
        s.name for s in lock.lockable(catalog)]
    with pytest.raises(ImagekitError, match="name at least one stack or image, or pass --all"):
        lock.stacks_to_lock(catalog, [])
    with pytest.raises(ImagekitError) as info:
        lock.stacks_to_lock(catalog, ["r", "scipyy", "scipy"])
    assert [str(p) for p in info.value.problems] == [
        f"{catalog.stacks['r'].file}: pip: stack r installs no pip packages of its own",
        "NAMES: unknown stack or image 'scipyy' (did you mean scipy?)",
    ]


def test_a_build_names_each_stale_lock_it_would_install_from_once(project: Path) -> None:
    path = project / "stacks/scipy.yaml"
    path.write_text(path.read_text() + "pip_exclude: [tqdm]\n")
    catalog = load_catalog(project / "catalog.yaml")
    # pytorch stands on scipy: both stale, scipy's said once though two images install it.
    problems = lock.stale_locks(catalog, ["pytorch", "scipy-hpc", "scipy"])
    assert [p.file for p in problems] == [project / "stacks/scipy.lock",
                                          project / "stacks/pytorch.lock"]
    assert lock.stale_locks(catalog, ["vscode", "rstudio"]) == []
