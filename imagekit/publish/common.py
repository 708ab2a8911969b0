"""What the publishing steps share: the tags and media types imagekit gives what it pushes,
the report a publication returns, and reading back the catalog published before.

`pipeline` (publish), `shared` (push, publish --from-registry), `retention` (pin, prune) and
`verify` import these names from here rather than from each other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from imagekit.model import Catalog
from imagekit.publish.registry import CATALOG_LAYER_TYPE, Registry
from imagekit.published.catalog import PublishedCatalog, PublishedImage, parse

Log = Callable[[str], None]
CATALOG_REPOSITORY, CATALOG_TAG = "catalog", "latest"
HISTORY = "history-"  # the tag of each catalog published, numbered
TEST_RECORD_TYPE = "application/vnd.imagekit.test-record.v1+json"
RECORD_CONFIG_TYPE = "application/vnd.imagekit.record.config.v1+json"
RECORD_LAYER_TYPE = "application/vnd.imagekit.record.v1+json"
EPOCH = "1970-01-01T00:00:00Z"
UNTESTED = "untested-"  # the one tag of an image published with --skip-tests
IMMUTABLE = "id-"  # the tag named for a tested image's ID; moving tags follow it
INDEX = "index-"  # after id- or untested-: the tag named for a multi-architecture index


@dataclass
class ImageReport:
    image: str
    reference: str
    tags: list[str]
    tested: str
    sent: int
    size: int
    seconds: float
    sif_reference: str = ""
    sif_sent: int = 0


@dataclass
class PublishReport:
    images: list[ImageReport] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)
    catalog: str = ""
    catalog_digest: str = ""
    exports: list[str] = field(default_factory=list)
    sent: int = 0
    changed: bool = False
    seconds: float = 0.0

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def records_repository(catalog: Catalog, image: str) -> str:
    """Where a CI runner's record of an image is pushed (`imagekit push`)."""
    return catalog.repository(f"records/{image}")


def previous_catalog(catalog: Catalog, registry: Registry) -> PublishedCatalog | None:
    """The catalog the registry holds under `latest`; None: nothing was published yet."""
    repository = catalog.repository(CATALOG_REPOSITORY)
    data = registry.pull_artifact(repository, CATALOG_TAG, CATALOG_LAYER_TYPE)
    return None if data is None else parse(data.decode(), f"{repository}:{CATALOG_TAG}")


def entry_of(previous: PublishedCatalog | None, name: str) -> PublishedImage | None:
    if previous is None:
        return None
    try:
        return previous.image(name)
    except KeyError:
        return None


def history_tags(registry: Registry, repository: str) -> list[str]:
    """The catalog's history tags, oldest first: one per catalog ever published."""
    return sorted(t for t in registry.tags(repository)
                  if t.startswith(HISTORY) and t[len(HISTORY):].isdigit())
