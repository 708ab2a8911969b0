"""What `imagekit test` found, kept against the exact image ID it tested.

Publishing reads these records: an image reaches the registry (and moving tags reach it)
only when the record for its current image ID says every check passed. Tags move locally
on every successful build, so the ID, not the tag, is what a record names.

A record also names what was checked (`plan`): the image's checks and runtime as the model
gives them, the platform, the engine, and the code of the checks and of the engine.
`imagekit test` runs nothing again for an image ID whose record passed the same plan.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path

from imagekit import __version__
from imagekit.checks import CheckResult
from imagekit.files import write_atomically
from imagekit.model import Catalog, Image
from imagekit.schema import Platform


@dataclass(frozen=True)
class TestRecord:
    image: str
    image_id: str
    passed: int
    failed: int
    checks: list[str]
    tested_at: str
    imagekit: str
    plan: str = ""  # plan(); empty in records written before it: they never match

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.passed > 0


@cache
def _checks_code() -> str:
    """The digest of the sources of the checks and of the engine that starts their
    containers: a record made by other code is not reused."""
    digest = hashlib.sha256()
    package = Path(__file__).parent.parent
    for source in sorted([*(package / "checks").glob("*.py"), *(package / "engine").glob("*.py")]):
        digest.update(f"{source.parent.name}/{source.name}".encode() + b"\0"
                      + source.read_bytes())
    return digest.hexdigest()


def plan(image: Image, platform: Platform, engine: str) -> str:
    """What `imagekit test` checks of `image` on `platform` with `engine` (its name and
    version, rootful or rootless: the same image ID can be in two engines), as one digest."""
    what = {"image": image.name, "checks": asdict(image.checks), "runtime": asdict(image.runtime),
            "platform": platform, "engine": engine, "imagekit": __version__,
            "code": _checks_code()}
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()


def _folder(catalog: Catalog) -> Path:
    return catalog.dist / "tested"


def _path(catalog: Catalog, image_id: str) -> Path:
    return _folder(catalog) / f"{image_id.removeprefix('sha256:')}.json"


def save(catalog: Catalog, image: str, image_id: str, results: list[CheckResult],
         plan: str) -> TestRecord:
    record = TestRecord(
        image=image,
        image_id=image_id,
        passed=sum(1 for r in results if r.ok),
        failed=sum(1 for r in results if not r.ok),
        checks=[r.name for r in results],
        tested_at=dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        imagekit=__version__,
        plan=plan,
    )
    path = _path(catalog, image_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, json.dumps(asdict(record), indent=2) + "\n")
    return record


def load(catalog: Catalog, image_id: str) -> TestRecord | None:
    path = _path(catalog, image_id)
    if not path.is_file():
        return None
    try:
        return TestRecord(**json.loads(path.read_text()))
    except (ValueError, TypeError):
        return None  # a damaged record counts as no record: the image is tested again
