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
HISTORY = "history-"  # the tag of each catalog published, then a number (release.py)
# Annotations of the catalog's manifests: what a history tag's publication changed (image
# names), and which history tags the catalog under `latest` includes.
CHANGED, INCLUDES = "io.imagekit.changed", "io.imagekit.includes"
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
    return base_of(catalog, registry).catalog


def entry_of(previous: PublishedCatalog | None, name: str) -> PublishedImage | None:
    if previous is None:
        return None
    try:
        return previous.image(name)
    except KeyError:
        return None


def history_tags(registry: Registry, repository: str) -> list[str]:
    """The catalog's history tags, oldest first: one per catalog ever published."""
    return sorted((t for t in registry.tags(repository)
                   if t.startswith(HISTORY) and t[len(HISTORY):].isdigit()),
                  key=lambda t: int(t[len(HISTORY):]))


@dataclass(frozen=True)
class Base:
    """What a publication starts from: the catalog under `latest`, and the history tags
    whose publications it includes, read from the same manifest. A history tag that is not
    among them is a publication that landed meanwhile, whose changes the new catalog keeps."""
    catalog: PublishedCatalog | None
    seen: frozenset[str]


def base_of(catalog: Catalog, registry: Registry) -> Base:
    repository = catalog.repository(CATALOG_REPOSITORY)
    listed = frozenset(history_tags(registry, repository))  # before `latest`: see below
    found = registry.artifact(repository, CATALOG_TAG, CATALOG_LAYER_TYPE)
    if found is None:
        return Base(None, frozenset())
    data, annotations = found
    published = parse(data.decode(), f"{repository}:{CATALOG_TAG}")
    if INCLUDES in annotations:
        return Base(published, frozenset(filter(None, annotations[INCLUDES].split(","))))
    # Written by an imagekit that did not say: what was listed just before it was read.
    return Base(published, listed)
