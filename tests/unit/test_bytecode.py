"""The recipes' bytecode step (imagekit/render/bytecode.py, run inside each build): compiles
what one pip step added, keeps each distribution's bytecode in the cache mount, and unpacks
it again for the same files, on any build of the same Python version."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from imagekit.render import bytecode


def _site(tmp_path: Path, name: str = "tiny", body: str = "X = 1\n") -> Path:
    site = tmp_path / "site"
    (site / name).mkdir(parents=True)
    (site / name / "__init__.py").write_text(body)
    info = site / f"{name}-1.0.dist-info"
    info.mkdir()
    (info / "RECORD").write_text(f"{name}/__init__.py,sha256=x,{len(body)}\n"
                                 f"{info.name}/RECORD,,\n")
    return site


def _pyc(site: Path, name: str = "tiny") -> Path:
    return Path(importlib.util.cache_from_source(str(site / name / "__init__.py")))


def test_what_the_step_added_is_compiled_kept_and_unpacked_again(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    site, cache = _site(tmp_path), tmp_path / "cache"
    cache.mkdir()
    before = tmp_path / "before"
    before.write_text("")
    assert bytecode.main(site, before, cache) == 0
    compiled = _pyc(site).read_bytes()
    assert compiled[:4] == importlib.util.MAGIC_NUMBER
    assert "1 distributions, 0 from the cache, 1 files compiled" in capsys.readouterr().out
    [kept] = cache.glob("*.tar")
    _pyc(site).unlink()
    assert bytecode.main(site, before, cache) == 0
    assert "1 from the cache, 0 files compiled" in capsys.readouterr().out
    assert _pyc(site).read_bytes() == compiled
    # A distribution that was there before the step is left alone.
    before.write_text("tiny-1.0.dist-info\n")
    assert bytecode.main(site, before, cache) == 0
    assert "0 distributions" in capsys.readouterr().out
    assert list(cache.glob("*.tar")) == [kept]


def test_without_gnu_tar_the_cache_is_unpacked_by_tarfile(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site, cache, before = _site(tmp_path), tmp_path / "cache", tmp_path / "before"
    cache.mkdir()
    before.write_text("")
    assert bytecode.main(site, before, cache) == 0
    compiled = _pyc(site).read_bytes()
    _pyc(site).unlink()
    monkeypatch.setattr("shutil.which", lambda name: None)
    assert bytecode.main(site, before, cache) == 0
    assert _pyc(site).read_bytes() == compiled


def test_the_key_is_the_files_and_the_python_version_not_the_interpreters_build(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = _site(tmp_path)
    key, sources = bytecode._sources(site, "tiny-1.0.dist-info")
    assert sources == [site / "tiny/__init__.py"]
    # Another architecture's build of this Python: another date and compiler in sys.version.
    monkeypatch.setattr(sys, "version", "3.11.2 (main, Jan  1 2030, 00:00:00) [GCC 99]")
    assert bytecode._sources(site, "tiny-1.0.dist-info")[0] == key
    # Other files, or another bytecode format, another key.
    other = _site(tmp_path / "other", body="X = 22\n")
    assert bytecode._sources(other, "tiny-1.0.dist-info")[0] != key
    monkeypatch.setattr(bytecode, "VERSION", b"3.12.0" + b"\xcb\r\r\n")
    assert bytecode._sources(site, "tiny-1.0.dist-info")[0] != key
