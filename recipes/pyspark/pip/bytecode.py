"""Byte-compile what one pip step installed, reusing what an earlier build compiled.

Not imported by imagekit: `imagekit render` copies this file into each locked recipe
(`pip/bytecode.py`) and the build runs it with the image's own Python right after the
install, as `python3 bytecode.py SITE_PACKAGES BEFORE [CACHE]`:

- SITE_PACKAGES: the venv's site-packages;
- BEFORE: a file listing the `*.dist-info` folders that were there before the install, so
  only the distributions this step added are compiled;
- CACHE: a BuildKit cache mount (absent in a Singularity build): each distribution's
  bytecode is kept there as a tar named by the digest of its RECORD (its exact files and
  their hashes) and this Python's version, so a rebuild that installs the same numpy again
  unpacks numpy's bytecode instead of compiling it, and so does another architecture's
  build of the same pure-Python distribution (BuildKit shares a cache mount between
  platforms).

Bytecode is written in unchecked-hash mode: the image's files never change, so Python need
not compare sources at import, and the same sources give the same bytes in every build.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import py_compile
import shutil
import subprocess
import sys
import tarfile
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

MODE = py_compile.PycInvalidationMode.UNCHECKED_HASH
SERIAL = 200  # fewer files than this are compiled in this process
# What the bytecode depends on besides the sources: the compiler's version and the bytecode
# format. Not the interpreter's build (sys.version names its date and C compiler): each
# architecture's Python of one version compiles the same bytes, so a pure-Python
# distribution that an amd64 build compiled is unpacked by the arm64 build under QEMU.
VERSION = ".".join(map(str, sys.version_info[:3])).encode() + importlib.util.MAGIC_NUMBER


def _compile(path: str) -> None:
    py_compile.compile(path, doraise=False, quiet=2, invalidation_mode=MODE)


def _sources(site: Path, dist: str) -> tuple[str, list[Path]]:
    """The digest that names this distribution's bytecode, and its Python sources."""
    record = (site / dist / "RECORD").read_bytes()
    key = hashlib.sha256(record + VERSION + MODE.name.encode()).hexdigest()
    sources = []
    for line in record.decode().splitlines():
        name = line.split(",", 1)[0]
        if name.endswith(".py") and not name.startswith(("..", "/")):
            path = site / name
            if path.is_file():  # pruned files (package test suites) are gone
                sources.append(path)
    return key, sources


def _unpack(archive: Path, site: Path) -> None:
    """Unpack cached bytecode: with GNU tar where the image has it (twice as fast as
    tarfile on scipy's thousands of files), else with tarfile. The archives are this
    script's own, of regular files under SITE only."""
    tar_bin = shutil.which("tar")
    if tar_bin is not None:
        subprocess.run([tar_bin, "-xf", str(archive), "-C", str(site)], check=True)
        return
    with tarfile.open(archive) as tar:
        tar.extractall(site)


def main(site: Path, before: Path, cache: Path | None) -> int:
    known = set(before.read_text().split())
    added = sorted(d for d in os.listdir(site) if d.endswith(".dist-info") and d not in known)
    to_compile: list[Path] = []
    to_keep: list[tuple[Path, list[Path]]] = []
    reused = 0
    for dist in added:
        key, sources = _sources(site, dist)
        archive = cache / f"{key}.tar" if cache else None
        if archive is not None and archive.is_file():
            _unpack(archive, site)
            reused += 1
            continue
        to_compile += sources
        if archive is not None:
            to_keep.append((archive, sources))
    if len(to_compile) < SERIAL:  # a few files: not worth starting a process per core
        for path in to_compile:
            _compile(str(path))
    else:
        with ProcessPoolExecutor() as pool:
            list(pool.map(_compile, [str(p) for p in to_compile], chunksize=32))
    for archive, sources in to_keep:
        compiled = [Path(importlib.util.cache_from_source(str(p))) for p in sources]
        fd, partial = tempfile.mkstemp(dir=archive.parent, suffix=".partial")
        os.close(fd)
        with tarfile.open(partial, "w") as tar:
            for pyc in compiled:
                if pyc.is_file():
                    tar.add(pyc, arcname=str(pyc.relative_to(site)))
        os.replace(partial, archive)
    print(f"bytecode: {len(added)} distributions, {reused} from the cache, "
          f"{len(to_compile)} files compiled")
    return 0


if __name__ == "__main__":
    cache_dir = Path(sys.argv[3]) if len(sys.argv) > 3 and sys.argv[3] else None
    if cache_dir is not None and not cache_dir.is_dir():
        cache_dir = None
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2]), cache_dir))
