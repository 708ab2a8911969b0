"""Build contexts assembled in memory, with normalised tar metadata.

Owner, group and mtime are fixed and members sorted, so the same inputs give the same bytes:
the context's hash is part of the cache key, and the engine's own layer cache sees stable
file metadata for COPY.
"""

from __future__ import annotations

import email.parser
import hashlib
import io
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from imagekit import lock
from imagekit.errors import ImagekitError, Problem
from imagekit.model import Catalog, Image
from imagekit.recipes import layer_files
from imagekit.render.docker import DockerRenderer
from imagekit.render.plan import plan
from imagekit.schema import Platform

EXECUTABLE = 0o755
REGULAR = 0o644


@dataclass(frozen=True)
class BuildContext:
    files: dict[str, bytes]  # path in the context -> content
    modes: dict[str, int]

    def tar(self) -> bytes:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
            dirs: set[str] = set()
            for path in sorted(self.files):
                parts = path.split("/")[:-1]
                for i in range(1, len(parts) + 1):
                    d = "/".join(parts[:i])
                    if d not in dirs:
                        dirs.add(d)
                        tar.addfile(_info(d, 0, tarfile.DIRTYPE, EXECUTABLE))
                data = self.files[path]
                tar.addfile(_info(path, len(data), tarfile.REGTYPE, self.modes[path]),
                            io.BytesIO(data))
        return buffer.getvalue()

    def digest(self) -> str:
        h = hashlib.sha256()
        for path in sorted(self.files):
            h.update(f"{path}\0{self.modes[path]:o}\0{len(self.files[path])}\0".encode())
            h.update(self.files[path])
        return h.hexdigest()


def _info(name: str, size: int, kind: bytes, mode: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.type, info.mode = size, kind, mode
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.mtime = 0
    return info


def assemble(catalog: Catalog, image: Image, platform: Platform | None = None) -> BuildContext:
    # Only what the Dockerfile reads: a change to the Singularity definition must not make
    # the Docker image look changed.
    files = {path: text.encode()
             for path, text in DockerRenderer().render(catalog, image, platform).items()}
    files.update(layer_files(catalog, image))
    modes = {path: REGULAR for path in files}
    for layer in image.layers:
        for f in layer.files:
            # The file's own bits, not os.access(): the key must not depend on who builds.
            if f.source.stat().st_mode & 0o111:
                modes[f.context_path] = EXECUTABLE
    recipe = plan(catalog, image, platform)
    if recipe.ca_bundle:
        files["site/ca-bundle.crt"] = _site_file(catalog, "ca_bundle", catalog.site.ca_bundle)
        modes["site/ca-bundle.crt"] = REGULAR
    if recipe.wheelhouse:
        for folder, wanted in _wheelhouses(catalog, image, recipe.pip).items():
            for name, data in wheels_for(catalog, wanted, platform).items():
                files[f"{folder}/{name}"] = data
                modes[f"{folder}/{name}"] = REGULAR
            # BuildKit's bind mount needs the folder even when no wheel matches.
            files.setdefault(f"{folder}/.keep", b"")
            modes.setdefault(f"{folder}/.keep", REGULAR)
    return BuildContext(files, modes)


def _wheelhouses(catalog: Catalog, image: Image, pip: tuple[str, ...]
                 ) -> dict[str, tuple[str, ...]]:
    """Each pip step's wheelhouse folder in the context, with what it installs. A bind
    mount's files are part of its step's cache key: the settled install gets the wheels of
    the settled pins only (each of its layers those of its own), so that adding a package
    leaves that step's key as it was."""
    pins = lock.for_image(catalog, image)
    if pins is None:
        return {"wheelhouse": pip}
    # Each layer of the settled part binds the wheels of its own pins (pip_layers).
    out = {part.wheelhouse: part.pins() for part in lock.settled_parts(image, pins)}
    if pins.added:
        out["wheelhouse-added"] = tuple(f"{n}=={v}" for n, v in pins.added)
    return out


def _site_file(catalog: Catalog, field: str, value: str | None) -> bytes:
    assert value is not None
    path = Path(value)
    try:
        return path.read_bytes()
    except OSError as exc:
        owner = next((p.file for p in catalog.site_profiles if getattr(p.site, field)), None)
        raise ImagekitError(Problem(owner, f"site.{field}",
                                    f"cannot read {path}: {exc.strerror}")) from exc


def wheels_for(catalog: Catalog, requirements: tuple[str, ...],
               platform: Platform | None = None) -> dict[str, bytes]:
    """The wheelhouse's wheels this image's install can need: those it asks for and, through
    each wheel's own Requires-Dist, everything they need that the wheelhouse holds.

    Only those go into the context (a whole wheelhouse can be gigabytes), but all of them:
    an air-gapped build (`pip_no_index`) has nothing else to install from.
    """
    folder = Path(catalog.site.find_links or "")
    if not folder.is_dir():
        return {}
    by_project: dict[str, list[Path]] = {}
    for wheel in sorted(folder.glob("*.whl")):
        by_project.setdefault(canonicalize_name(wheel.name.split("-")[0]), []).append(wheel)
    target = lock.target(catalog, platform)
    wanted = [Requirement(r) for r in requirements]
    if catalog.site.pip_no_index:
        wanted.append(Requirement("uv"))  # a venv without uv installs it first
    seen: set[tuple[str, frozenset[str]]] = set()
    out: dict[str, bytes] = {}
    while wanted:
        req = wanted.pop()
        key = (canonicalize_name(req.name), frozenset(req.extras))
        if key in seen:
            continue
        seen.add(key)
        for wheel in by_project.get(key[0], []):
            out[wheel.name] = wheel.read_bytes()
            wanted += _requires(wheel, req.extras, target)
    return dict(sorted(out.items()))


def _requires(wheel: Path, extras: set[str], target: lock.Target) -> list[Requirement]:
    """A wheel's dependencies for the target environment and the extras asked for."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            name = next(n for n in archive.namelist()
                        if n.endswith(".dist-info/METADATA") and n.count("/") == 1)
            metadata = archive.read(name).decode(errors="replace")
    except (OSError, zipfile.BadZipFile, StopIteration) as exc:
        raise ImagekitError(f"wheelhouse: {wheel} is not a readable wheel ({exc})") from None
    headers = email.parser.Parser().parsestr(metadata, headersonly=True)
    markers = target.markers()
    environments = [{**markers, "extra": e} for e in sorted(extras) or [""]]
    found = []
    for line in headers.get_all("Requires-Dist") or []:
        try:
            req = Requirement(line)
        except InvalidRequirement:
            continue
        if req.marker is None or any(req.marker.evaluate(env) for env in environments):
            found.append(req)
    return found
