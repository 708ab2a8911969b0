"""Rendered recipes on disk: recipes/<image>/{Dockerfile,Singularity.def,scripts/,files/}.

Each recipe folder is a complete build context (bar the site's CA bundle and wheelhouse,
which `imagekit build` adds), so people without imagekit can still run `docker build` or
`apptainer build` in it. Output is byte-for-byte deterministic; `check` compares it with
what is on disk.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from imagekit import lock, lockfile
from imagekit.model import Catalog, Image
from imagekit.render.base import Renderer
from imagekit.render.docker import DockerRenderer
from imagekit.render.singularity import SingularityRenderer
from imagekit.said import Said

# Written by `imagekit build` into the context, never committed: the site's files and the
# wheelhouse folders (wheelhouse, wheelhouse-added, wheelhouse-1, ...).
BUILD_ONLY = ("site", "wheelhouse")


def build_only(top: str) -> bool:
    """A top-level name of a recipe folder that only a build's context holds."""
    return top in BUILD_ONLY or top.startswith("wheelhouse-")


# Run inside the image after a locked install: compiles what it added, with a cache.
BYTECODE = Path(__file__).parent / "render" / "bytecode.py"


def renderers() -> tuple[Renderer, ...]:
    return (DockerRenderer(), SingularityRenderer())


def render_image(catalog: Catalog, image: Image) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for renderer in renderers():
        for path, text in renderer.render(catalog, image).items():
            out[path] = text.encode()
    out.update(layer_files(catalog, image))
    return dict(sorted(out.items()))


def layer_files(catalog: Catalog, image: Image) -> dict[str, bytes]:
    """The files the image's layers add, by their path in the recipe folder, and the lock
    its pip packages install from."""
    out = {f.context_path: f.source.read_bytes() for layer in image.layers for f in layer.files}
    pins = lock.for_image(catalog, image)
    if pins is not None:
        out["pip/requirements.lock"] = pins.text.encode()
        # The lock's two parts, each installed by a layer of its own: without the header
        # (its inputs line changes at every relock), so that adding a package leaves the
        # settled part's bytes, and the layer that installs them, as they were.
        lock_name = pins.file.name
        parts = lock.settled_parts(image, pins)
        for number, part in enumerate(parts, 1):
            what = ("the image's first pip layer" if len(parts) == 1 else
                    f"pip layer {number} of {len(parts)} (the stack's pip_layers)")
            out[f"pip/{part.file}"] = (f"# The settled part of {lock_name}: {what}.\n"
                                       + part.entries).encode()
        if pins.added:
            out["pip/added.lock"] = (f"# The part of {lock_name} added since it was settled: "
                                     "a pip layer of its own.\n"
                                     + lockfile.added_part(pins.text)).encode()
        out["pip/uv.txt"] = lock.uv_pin(pins).encode()
        # uv installs the lock but is not installed by it: it stays out of the image.
        out["pip/excludes.txt"] = b"uv\n"
        out["pip/bytecode.py"] = BYTECODE.read_bytes()
    return out


@dataclass(frozen=True)
class Drift:
    image: str
    path: str
    reason: str  # "missing", "changed", "unexpected"

    def __str__(self) -> str:
        return f"recipes/{self.image}/{self.path}: {self.reason}"


def recipes_dir(catalog: Catalog) -> Path:
    return catalog.root / "recipes"


def write(catalog: Catalog, images: list[Image]) -> list[Path]:
    root = recipes_dir(catalog)
    written: list[Path] = []
    for image in images:
        folder = root / image.name
        wanted = render_image(catalog, image)
        for existing in _committed_files(folder):
            if existing not in wanted:
                (folder / existing).unlink()
        for rel, data in wanted.items():
            target = folder / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.is_file() or target.read_bytes() != data:
                target.write_bytes(data)
            written.append(target)
        _prune_empty_dirs(folder)
    return written


def render_or_check(catalog: Catalog, names: list[str], all_: bool, check_only: bool) -> Said:
    """`imagekit render`: write the named images' recipes (or all); with `check_only`, each
    file that differs from what the catalog renders is stale (exit 1)."""
    if check_only:
        drift = [f"stale: {d}" for d in check(catalog)]
        if drift:
            return Said(err=[*drift, "recipes/ is out of date: run `imagekit render --all` "
                                     "and commit it"], code=1)
        return Said([f"ok: recipes/ matches the catalog ({len(catalog.images)} images)"])
    selected = catalog.select(names, all_)
    written = write(catalog, selected)
    return Said([*(f"rendered recipes/{image.name}/" for image in selected),
                 f"{len(written)} files in {len(selected)} recipe folders"])


def check(catalog: Catalog) -> list[Drift]:
    root = recipes_dir(catalog)
    drift: list[Drift] = []
    for image in catalog.images.values():
        folder = root / image.name
        wanted = render_image(catalog, image)
        present = set(_committed_files(folder))
        for rel, data in wanted.items():
            if rel not in present:
                drift.append(Drift(image.name, rel, "missing"))
            elif (folder / rel).read_bytes() != data:
                drift.append(Drift(image.name, rel, "changed"))
        drift += [Drift(image.name, rel, "unexpected") for rel in sorted(present - set(wanted))]
    if root.is_dir():
        for folder in sorted(root.iterdir()):
            if folder.is_dir() and folder.name not in catalog.images:
                drift.append(Drift(folder.name, "", "no such image in the catalog"))
    return drift


def _committed_files(folder: Path) -> list[str]:
    if not folder.is_dir():
        return []
    return sorted(
        str(p.relative_to(folder))
        for p in folder.rglob("*")
        if p.is_file() and not build_only(p.relative_to(folder).parts[0])
    )


def _prune_empty_dirs(folder: Path) -> None:
    for d in sorted((p for p in folder.rglob("*") if p.is_dir()), reverse=True):
        if not any(d.iterdir()):
            d.rmdir()
