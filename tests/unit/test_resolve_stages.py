"""The stages of `load_catalog`, each alone: given a few specs, then the model (or the problem)
it gives. The whole catalog, read from disk, is test_validation.py's and test_bad_input.py's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from imagekit import resolve
from imagekit.errors import ImagekitError, Problem
from imagekit.load import Loc
from imagekit.model import Image, Stack
from imagekit.schema import CatalogSpec, ProfileSpec, StackSpec

ROOT_STACK: dict[str, Any] = {
    "description": "the root", "type": "jupyter", "port": 8888, "command": ["jupyter", "lab"],
    "entrypoint": ["tini", "--"], "user": "jovyan", "uid": 1000, "gid": 100,
    "venv": "/opt/venv", "pip": ["jupyterlab"], "env": {"A": "root", "B": "root"},
}
CATALOG: dict[str, Any] = {
    "registry": "ghcr.io", "namespace": "lab", "base": {"image": "debian:bookworm"},
    "images": [],
}


def stack_specs(tmp_path: Path, **stacks: dict[str, Any]) -> dict[str, tuple[Path, StackSpec]]:
    return {name: (tmp_path / f"{name}.yaml", StackSpec.model_validate(spec))
            for name, spec in stacks.items()}


def no_line(loc: Loc) -> int | None:
    return None


def specs_of(tmp_path: Path, images: list[dict[str, Any]], profiles: dict[str, Any] | None = None,
             **catalog: Any) -> resolve.Specs:
    return resolve.Specs(
        file=tmp_path / "catalog.yaml",
        catalog=CatalogSpec.model_validate({**CATALOG, "images": images, **catalog}),
        line_of=no_line,
        stacks=stack_specs(tmp_path, base=ROOT_STACK, scipy={
            "extends": "base", "description": "scipy", "pip": ["numpy"]}),
        profiles={name: (tmp_path / f"{name}.yaml", ProfileSpec.model_validate(spec))
                  for name, spec in (profiles or {}).items()},
    )


def stacks_of(specs: resolve.Specs) -> dict[str, Stack]:
    problems: list[Problem] = []
    stacks = resolve.resolve_stacks(specs.stacks, specs.root, problems)
    assert problems == []
    return stacks


def listed_of(specs: resolve.Specs) -> tuple[list[tuple[int, Image]], list[Problem]]:
    problems: list[Problem] = []
    profiles = resolve.resolve_profiles(specs, problems)
    site_profiles, _site = resolve.resolve_site(specs, profiles, problems)
    listed = resolve.list_images(specs, stacks_of(specs), profiles, site_profiles, problems)
    return listed, problems


# --- read -----------------------------------------------------------------------------------

def test_reading_reports_every_file_and_remembers_the_ones_that_did_not_parse(
        tmp_path: Path) -> None:
    (tmp_path / "catalog.yaml").write_text(
        "registry: ghcr.io\nnamespace: lab\nbase: {image: 'debian:bookworm'}\nimages: []\n")
    (tmp_path / "stacks").mkdir()
    (tmp_path / "stacks/good.yaml").write_text("description: fine\n")
    (tmp_path / "stacks/broken.yaml").write_text("pip: [\n")
    (tmp_path / "stacks/Bad.yaml").write_text("description: x\n")
    problems: list[Problem] = []
    specs = resolve.read_specs(tmp_path / "catalog.yaml", problems)
    assert list(specs.stacks) == ["good"] and specs.broken_stacks == {"broken"}
    assert specs.profiles == {} and specs.root == tmp_path
    assert [(p.file and p.file.name, p.line) for p in problems] == [("Bad.yaml", None),
                                                                    ("broken.yaml", 2)]
    assert specs.line_of(("namespace",)) == 2


def test_reading_stops_at_a_catalog_file_that_is_missing_or_unusable(tmp_path: Path) -> None:
    with pytest.raises(ImagekitError, match="catalog file not found"):
        resolve.read_specs(tmp_path / "catalog.yaml", [])
    (tmp_path / "catalog.yaml").write_text("registry: ghcr.io\n")
    problems: list[Problem] = []
    with pytest.raises(ImagekitError) as info:
        resolve.read_specs(tmp_path / "catalog.yaml", problems)
    assert info.value.problems == problems
    assert {p.field for p in problems} == {"namespace", "base", "images"}


# --- merge ----------------------------------------------------------------------------------

def test_a_child_stack_inherits_and_its_own_settings_win(tmp_path: Path) -> None:
    specs = stack_specs(tmp_path, base=ROOT_STACK, child={
        "extends": "base", "description": " child ", "port": 9999, "env": {"B": "child"},
        "pip": ["jupyterlab", "numpy"], "pip_exclude": ["six"]})
    problems: list[Problem] = []
    stacks = resolve.resolve_stacks(specs, tmp_path, problems)
    assert problems == []
    child = stacks["child"]
    assert (child.parent, child.description) == ("base", "child")
    assert (child.runtime.port, child.runtime.user) == (9999, "jovyan")
    assert child.env == (("A", "root"), ("B", "child"))
    assert child.pip_all == ("jupyterlab", "numpy") and child.pip_exclude_all == ("six",)
    assert child.layer.pip == ("jupyterlab", "numpy")  # its own list, as written
    assert child.lock is None  # no child.lock beside child.yaml


def test_the_root_stack_must_set_every_runtime_field(tmp_path: Path) -> None:
    specs = stack_specs(tmp_path, base={"description": "root", "type": "jupyter"})
    problems: list[Problem] = []
    assert resolve.resolve_stacks(specs, tmp_path, problems) == {}
    assert [p.field for p in problems] == ["port", "command", "entrypoint", "user", "uid",
                                           "gid", "venv"]
    assert {p.message for p in problems} == {"the root stack (no 'extends') must set it"}


def test_a_cycle_is_reported_once_and_leaves_out_every_stack_in_it(tmp_path: Path) -> None:
    specs = stack_specs(tmp_path, base=ROOT_STACK,
                        a={"extends": "b", "description": "a"},
                        b={"extends": "a", "description": "b"},
                        c={"extends": "a", "description": "c"},
                        d={"extends": "nope", "description": "d"},
                        e={"extends": "gone", "description": "e"})
    problems: list[Problem] = []
    stacks = resolve.resolve_stacks(specs, tmp_path, problems, broken=frozenset({"gone"}))
    assert list(stacks) == ["base"]
    assert [str(p) for p in problems] == [
        f"{tmp_path}/d.yaml: extends: unknown parent stack 'nope'",
        f"{tmp_path}/a.yaml: extends: inheritance cycle: a -> b -> a",
    ]


def test_a_stack_without_a_description_is_refused(tmp_path: Path) -> None:
    specs = stack_specs(tmp_path, base=ROOT_STACK, child={"extends": "base",
                                                          "description": "  "})
    problems: list[Problem] = []
    assert list(resolve.resolve_stacks(specs, tmp_path, problems)) == ["base"]
    assert [(p.field, p.message) for p in problems] == [
        ("description", "every stack needs a description")]


def test_site_settings_add_up_and_no_index_needs_a_wheelhouse(tmp_path: Path) -> None:
    specs = specs_of(tmp_path, [], profiles={
        "ca": {"site": {"ca_bundle": "certs/ca.pem"}},
        "offline": {"site": {"pip_no_index": True}}}, site_profiles=["ca", "offline", "nope"])
    problems: list[Problem] = []
    profiles = resolve.resolve_profiles(specs, problems)
    site_profiles, site = resolve.resolve_site(specs, profiles, problems)
    assert [p.name for p in site_profiles] == ["ca", "offline"]
    assert site.ca_bundle == str(tmp_path / "certs/ca.pem")
    assert [str(p) for p in problems] == [
        f"{tmp_path}/catalog.yaml: site_profiles[2]: unknown profile 'nope'",
        f"{tmp_path}/offline.yaml: site.pip_no_index: installing without an index needs a "
        "wheelhouse: set site.find_links",
    ]


# --- images ---------------------------------------------------------------------------------

def test_each_listed_image_is_checked_on_its_own(tmp_path: Path) -> None:
    specs = specs_of(tmp_path, [
        {"stack": "scipy"},
        {"stack": "scipy", "profiles": ["gpu"]},
        {"name": "base", "stack": "scipy", "profiles": ["gpu"]},
        {"stack": "scipy"},
        {"name": "sif", "stack": "scipy", "profiles": ["gpu"], "consumers": ["batchspawner"]},
        {"name": "arm", "stack": "scipy", "profiles": ["gpu"], "platforms": ["linux/arm64"]},
        {"stack": "scipyy"},
        {"name": "ok", "stack": "scipy", "profiles": ["gpu", "nope"]},
    ], profiles={"gpu": {"env": {"GPU": "1"}}})
    listed, problems = listed_of(specs)
    assert [(i, img.name) for i, img in listed] == [(0, "scipy"), (7, "ok")]
    assert [(p.field, p.message) for p in problems] == [
        ("images[1].name", "an image with profiles needs a name of its own"),
        ("images[2].name", "'base' is the name of stack 'base''s own image"),
        ("images[3].name", "duplicate image name 'scipy'"),
        ("images[4].consumers", "batchspawner runs SIFs: add sif to the image's formats"),
        ("images[5].platforms", "linux/arm64 is not among the catalog's platforms "
                                "(linux/amd64): an image can only narrow them"),
        ("images[6].stack", "unknown stack 'scipyy'"),
        ("images[7].profiles[1]", "unknown profile 'nope'"),
    ]
    assert problems[0].hint == "e.g. scipy-gpu" and problems[5].hint == "did you mean scipy?"


def test_a_profile_with_site_settings_must_be_a_site_profile(tmp_path: Path) -> None:
    specs = specs_of(tmp_path, [{"name": "x", "stack": "scipy", "profiles": ["proxy"]}],
                     profiles={"proxy": {"site": {"apt_mirror": "http://mirror.example/"}}})
    listed, problems = listed_of(specs)
    assert [img.name for _, img in listed] == ["x"]  # reported, and still listed
    (problem,) = problems
    assert (problem.file, problem.field) == (tmp_path / "proxy.yaml", "site.apt_mirror")
    assert "list this profile under site_profiles in catalog.yaml" in problem.message
    assert problem.message.endswith("(used by images[0])")


def test_the_stacks_under_a_listed_image_get_unlisted_images_parents_first(
        tmp_path: Path) -> None:
    specs = specs_of(tmp_path, [{"name": "scipy-gpu", "stack": "scipy", "profiles": ["gpu"]}],
                     profiles={"gpu": {"env": {"GPU": "1"}}, "ca": {"env": {"CA": "1"}}},
                     site_profiles=["ca"])
    problems: list[Problem] = []
    profiles = resolve.resolve_profiles(specs, problems)
    site_profiles, _site = resolve.resolve_site(specs, profiles, problems)
    listed = resolve.list_images(specs, stacks_of(specs), profiles, site_profiles, problems)
    images = resolve.add_parent_images(specs.catalog, stacks_of(specs),
                                       [img for _, img in listed], site_profiles)
    assert problems == []
    assert [(n, i.parent, i.listed) for n, i in images.items()] == [
        ("base", None, False), ("scipy", "base", False), ("scipy-gpu", "scipy", True)]
    # The root image carries the site profiles' layers before its stack's own.
    assert [layer.origin for layer in images["base"].layers] == ["profile ca", "stack base"]
    assert [layer.origin for layer in images["scipy-gpu"].layers] == ["profile gpu"]


# --- check ----------------------------------------------------------------------------------

def test_an_image_is_built_only_for_platforms_its_parent_is_built_for(tmp_path: Path) -> None:
    specs = specs_of(tmp_path, [{"stack": "base", "platforms": ["linux/amd64"]},
                                {"stack": "scipy"}],
                     platforms=["linux/amd64", "linux/arm64"])
    listed, problems = listed_of(specs)
    images = resolve.add_parent_images(specs.catalog, stacks_of(specs),
                                       [img for _, img in listed], ())
    resolve.check_platforms(specs, listed, images, problems)
    assert [(p.field, p.message) for p in problems] == [(
        "images[1].platforms", "image 'scipy' is built FROM 'base', which is not built for "
        "linux/arm64: narrow 'scipy''s platforms, or widen 'base''s")]


def test_a_default_is_a_listed_image_of_its_type(tmp_path: Path) -> None:
    specs = specs_of(tmp_path, [{"stack": "scipy"}],
                     defaults={"jupyter": "scipy", "rstudio": "scipy", "code-server": "base"})
    listed, problems = listed_of(specs)
    images = resolve.add_parent_images(specs.catalog, stacks_of(specs),
                                       [img for _, img in listed], ())
    defaults = resolve.resolve_defaults(specs, images, [img for _, img in listed], problems)
    assert defaults == {"jupyter": "scipy"}
    # base is built (scipy's parent) but not listed: no default.
    assert [(p.field, p.message, p.hint) for p in problems] == [
        ("defaults.rstudio", "image 'scipy' is of type 'jupyter'", None),
        ("defaults.code-server", "unknown image 'base'", None),
    ]

