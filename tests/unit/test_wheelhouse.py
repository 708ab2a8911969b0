"""Given a wheelhouse, the build context gets every wheel the install can need, and no
other: what the image asks for, and what those wheels require for its Python."""

from __future__ import annotations

import dataclasses
import re
import zipfile
from pathlib import Path

import pytest

from imagekit.engine.context import wheels_for
from imagekit.errors import ImagekitError
from imagekit.model import Catalog


def wheel(folder: Path, name: str, version: str, *requires: str) -> str:
    filename = f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
    info = f"{name.replace('-', '_')}-{version}.dist-info"
    with zipfile.ZipFile(folder / filename, "w") as archive:
        metadata = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
        metadata += [f"Requires-Dist: {r}" for r in requires]
        archive.writestr(f"{info}/METADATA", "\n".join(metadata) + "\n")
    return filename


def at(catalog: Catalog, folder: Path, no_index: bool = False) -> Catalog:
    site = catalog.site.model_copy(
        update={"find_links": str(folder), "pip_no_index": no_index})
    return dataclasses.replace(catalog, site=site)


def test_dependencies_in_the_wheelhouse_come_along(catalog: Catalog, tmp_path: Path) -> None:
    names = {
        "app": wheel(tmp_path, "app", "1.0", "lib>=1", "Extra-Lib; extra == 'fast'",
                     "winonly; sys_platform == 'win32'", "old; python_version < '3.8'"),
        "lib": wheel(tmp_path, "lib", "2.0", "base_dep"),
        "base_dep": wheel(tmp_path, "base_dep", "1.0"),
        "extra_lib": wheel(tmp_path, "extra-lib", "1.0"),
        "winonly": wheel(tmp_path, "winonly", "1.0"),
        "old": wheel(tmp_path, "old", "1.0"),
        "unrelated": wheel(tmp_path, "unrelated", "1.0"),
    }
    got = wheels_for(at(catalog, tmp_path), ("app",))
    assert set(got) == {names["app"], names["lib"], names["base_dep"]}
    with_extra = wheels_for(at(catalog, tmp_path), ("app[fast]>=1",))
    assert names["extra_lib"] in with_extra and names["winonly"] not in with_extra


def test_an_air_gapped_build_also_gets_uv(catalog: Catalog, tmp_path: Path) -> None:
    uv = wheel(tmp_path, "uv", "0.9.0")
    assert uv not in wheels_for(at(catalog, tmp_path), ("six",))
    assert uv in wheels_for(at(catalog, tmp_path, no_index=True), ("six",))


def test_a_broken_wheel_is_named(catalog: Catalog, tmp_path: Path) -> None:
    (tmp_path / "app-1.0-py3-none-any.whl").write_bytes(b"not a zip")
    with pytest.raises(ImagekitError, match=re.escape("app-1.0-py3-none-any.whl")):
        wheels_for(at(catalog, tmp_path), ("app",))
