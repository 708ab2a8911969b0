"""In-memory stand-ins for imagekit's own engine and builder interfaces.

They implement only what build.py asks of an engine (look an image up, tag it, run a
command in it, say its version) and of a builder (turn a request into an image ID), so the
planning logic can be tested without a container engine; the rest of the Engine interface
(containers, volumes, exports) is test_engine_interface.py's, on a stub of the SDK's client.
The real ones are tested in tests/integration.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from imagekit.build import CACHE_LABEL, Outcome
from imagekit.engine.builders import Builder, BuildRequest, Progress
from imagekit.engine.client import Engine, ImageInfo
from imagekit.errors import BuildFailed
from imagekit.model import Catalog
from imagekit.schema import Platform

BASE_ID = "sha256:" + "b" * 64


class FakeEngine(Engine):
    """Images by ID and tags pointing at IDs, as the docker daemon keeps them."""

    def __init__(self) -> None:  # no docker client: nothing here reaches an engine
        self.client = None
        self.by_id: dict[str, ImageInfo] = {}
        self.refs: dict[str, str] = {}  # ref -> image ID
        self.tagged: list[tuple[str, str]] = []  # (image ID, ref), every engine.tag call
        self.outputs: dict[str, str] = {}  # command -> what it prints in any image
        self.layers: list[Path] | None = None  # what layer_dirs() says: None, export()

    @contextlib.contextmanager
    def layer_dirs(self, image: str) -> Iterator[list[Path] | None]:
        yield self.layers

    def add(self, image_id: str, *refs: str, labels: dict[str, str] | None = None,
            size: int = 1000) -> None:
        self.by_id[image_id] = ImageInfo(image_id, dict(labels or {}), size, (), "amd64",
                                         ("PATH=/usr/bin",), (), ("start-notebook.sh",))
        for ref in refs:
            self.refs[ref] = image_id

    def version(self) -> str:
        return "fake"

    def image_store(self) -> str:
        return "the fake's dictionaries"

    def image(self, ref: str) -> ImageInfo | None:
        image_id = self.refs.get(ref, ref)
        info = self.by_id.get(image_id)
        if info is None:
            return None
        tags = tuple(r for r, i in self.refs.items() if i == image_id)
        return dataclasses.replace(info, tags=tags)

    def tag(self, image_id: str, ref: str) -> None:
        self.refs[ref] = image_id
        self.tagged.append((image_id, ref))

    def untag(self, ref: str) -> None:
        self.refs.pop(ref, None)

    def pull(self, ref: str, platform: Platform | None = None) -> bool:
        return False

    def output_of(self, ref: str, command: str, timeout: int = 120) -> str:
        if "@@imagekit-section" in command:  # the package manifest (attest/packages.py)
            return ("@@imagekit-section debian\nbash\t5.2.15-2+b7\n"
                    '@@imagekit-section pip\n{"jupyterlab": "4.6.6"}\n')
        return self.outputs.get(command, "1.0.0\n")

    def outputs_of(self, ref: str, commands: Sequence[str], timeout: int = 120) -> list[str]:
        return [self.output_of(ref, command, timeout) for command in commands]


class FakeBuilder(Builder):
    """Builds by recording the request and adding an image with its labels to the engine."""

    def __init__(self, engine: FakeEngine, name: str = "buildkit",
                 fail: tuple[str, ...] = ()) -> None:
        self.engine = engine
        self.name = name
        self.description = f"fake {name}"
        self.fail = fail
        self.requests: list[BuildRequest] = []

    @property
    def built(self) -> list[str]:
        return [r.name for r in self.requests]

    def build(self, request: BuildRequest, progress: Progress) -> str:
        self.requests.append(request)
        progress("#5 [2/3] RUN true")
        if request.name in self.fail:
            raise BuildFailed(f"{request.name}: build failed at [2/3] RUN true")
        image_id = "sha256:" + hashlib.sha256(
            f"{request.name}\0{request.labels[CACHE_LABEL]}".encode()).hexdigest()
        self.engine.add(image_id, labels=dict(request.labels))
        return image_id


def with_site(catalog: Catalog, **changes: Any) -> Catalog:
    """The catalog with some site settings changed, as if a site profile said so, and its
    locks as if `imagekit lock` had resolved the same pins from the new sources."""
    return relocked(dataclasses.replace(catalog, site=catalog.site.model_copy(update=changes)))


def relocked(catalog: Catalog) -> Catalog:
    from imagekit import lock

    stacks = dict(catalog.stacks)
    for name, stack in stacks.items():
        if stack.lock is not None:
            current = dataclasses.replace(catalog, stacks=stacks)
            stacks[name] = dataclasses.replace(stack, lock=dataclasses.replace(
                stack.lock, inputs=lock.inputs(current, stack)))
    current = dataclasses.replace(catalog, stacks=stacks)
    images = {n: dataclasses.replace(i, stack=stacks[i.stack.name])
              for n, i in catalog.images.items()}
    return dataclasses.replace(current, images=images)


def without_wheelhouse(catalog: Catalog, folder: Path) -> Catalog:
    """The catalog reading wheels from `folder`: the real /opt/wheels holds a 190 MB torch."""
    return with_site(catalog, find_links=str(folder))


def engine_with_base(catalog: Catalog) -> FakeEngine:
    engine = FakeEngine()
    engine.add(BASE_ID, catalog.base.image)
    return engine


def build_all(catalog: Catalog, engine: FakeEngine, builder: Builder, names: list[str],
              force: bool = False) -> dict[str, Outcome]:
    from imagekit.build import run_builds

    outcomes = run_builds(catalog, engine, builder, names, force=force,
                          on_line=lambda image, text: None, on_status=lambda outcome: None)
    return {o.image: o for o in outcomes}


def wheel_bytes(project: str, payload: str = "") -> bytes:
    """A minimal real wheel: its METADATA (no dependencies) and one file of payload.

    Its entries carry a fixed date, so that the same arguments give the same bytes
    whenever they are called (a name alone would take the clock's two-second tick)."""
    import io
    import zipfile

    def entry(name: str) -> zipfile.ZipInfo:
        return zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(entry(f"{project}-1.0.dist-info/METADATA"),
                         f"Metadata-Version: 2.1\nName: {project}\nVersion: 1.0\n")
        archive.writestr(entry(f"{project}/payload.txt"), payload)
    return buffer.getvalue()
