"""What `imagekit publish` and `imagekit push` will push, checked before the first push.

Each image to publish must be publishable, built here for each of the catalog's platforms it
has, tested (unless --skip-tests) and, when it has the sif format, converted from that very
image. Every problem is said at once; nothing is pushed while there is one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from imagekit.attest.signing import cosign_key
from imagekit.checks import record
from imagekit.engine.client import Engine, ImageInfo
from imagekit.errors import ImagekitError, Problem
from imagekit.model import Catalog, Image
from imagekit.schema import Platform
from imagekit.sif import read_sidecar, sif_path


@dataclass(frozen=True)
class Candidate:
    image: Image
    info: ImageInfo
    tested: record.TestRecord | None  # None: published with --skip-tests
    sif: Path | None
    signing_key: Path | None = None  # the site's cosign key: the image is signed
    platform: Platform = "linux/amd64"


def preflight(catalog: Catalog, engine: Engine, names: list[str] | None,
              skip_tests: bool) -> list[Candidate]:
    """Everything to push, checked first; images not built are left out under --all only."""
    if catalog.layer_compression == "zstd" and engine.image_store().startswith("containerd"):
        # Its save holds the layers as built (gzip) under a manifest of its own; zstd layers
        # are made from an engine's own store (Docker's classic store, Podman).
        raise ImagekitError(Problem(catalog.file, "layers.compression",
                                    f"zstd layers are pushed from the engine's own image "
                                    f"store, and {engine.name} keeps images in containerd's: "
                                    "publish gzip layers (the default) from this engine"))
    explicit = names is not None
    wanted = [catalog.images[n] for n in names] if names is not None else [
        i for i in catalog.images.values() if i.listed and i.publish]
    problems: list[Problem] = []
    candidates: list[Candidate] = []
    key = cosign_key()  # a key set but unusable is said before anything is pushed
    for image in wanted:
        found, said = _image_candidates(catalog, engine, image, explicit=explicit,
                                        skip_tests=skip_tests, key=key)
        candidates += found
        problems += [Problem(catalog.file, f"images.{image.name}", why) for why in said]
    if problems:
        raise ImagekitError(problems)
    if not candidates:
        raise ImagekitError("nothing to publish: no listed image is built here")
    return candidates


def _image_candidates(catalog: Catalog, engine: Engine, image: Image, *, explicit: bool,
                      skip_tests: bool, key: Path | None) -> tuple[list[Candidate], list[str]]:
    """One image's candidates, one per platform, and what stands in their way."""
    refused = _refusal(image)
    if refused is not None:
        return [], [refused]
    platforms = [p for p in catalog.platforms if p in image.platforms]
    infos = {p: engine.image(catalog.ref(image.name, platform=p)) for p in platforms}
    missing = [p for p, info in infos.items() if info is None]
    if missing:
        # Under --all an image built for none of its platforms is left out, not refused.
        said = explicit or len(missing) < len(platforms)
        return [], [_not_built(image, platforms, missing)] if said else []
    candidates: list[Candidate] = []
    problems: list[str] = []
    for platform, info in infos.items():
        assert info is not None
        found = _platform_candidate(catalog, image, info, platform, several=len(platforms) > 1,
                                    skip_tests=skip_tests, key=key)
        if isinstance(found, str):
            problems.append(found)
        else:
            candidates.append(found)
    return candidates, problems


def _refusal(image: Image) -> str | None:
    if not image.publish:
        return "publish: false in the catalog"
    if "docker" not in image.formats:
        return "has no docker format to publish"
    return None


def _not_built(image: Image, platforms: list[Platform], missing: list[Platform]) -> str:
    on = f" for {', '.join(missing)}" if len(platforms) > 1 else ""
    flag = "".join(f" --platform {p}" for p in missing) if len(platforms) > 1 else ""
    return f"is not built here{on} (run `imagekit build {image.name}{flag}`)"


def _platform_candidate(catalog: Catalog, image: Image, info: ImageInfo, platform: Platform, *,
                        several: bool, skip_tests: bool, key: Path | None) -> Candidate | str:
    """The candidate for one platform's image, or why it cannot be published."""
    on = f" ({platform})" if several else ""
    flag = f" --platform {platform}" if several else ""
    tested = record.load(catalog, info.id)
    if not skip_tests and (tested is None or not tested.ok):
        why = ("was not tested" if tested is None
               else f"failed {tested.failed} of {tested.passed + tested.failed} checks")
        return (f"image {info.id[:19]}{on} {why}: run `imagekit test {image.name}{flag}` (or "
                "publish with --skip-tests)")
    sif = None
    if "sif" in image.formats:
        sif = sif_path(catalog, image, platform=platform)
        made_from = (read_sidecar(sif) or {}).get("image_id") if sif.is_file() else None
        if made_from != info.id:
            return (f"{sif.name} is missing or was made from another image: run `imagekit "
                    f"build {image.name}{flag} --format sif`")
    return Candidate(image, info, tested if tested and tested.ok else None, sif, key, platform)
