"""An SBOM per image: CycloneDX 1.6 JSON, made with cyclonedx-python-lib from the package
manifest read out of the built image (Debian, pip, R and npm packages).

The same inputs give the same bytes: the serial number is derived from the image ID and the
timestamp is the image's build time, so a republished image keeps its SBOM's digest.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid

from cyclonedx.model.bom import Bom
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.output.json import JsonV1Dot6
from packageurl import PackageURL

from imagekit import __version__
from imagekit.published.catalog import Packages

MEDIA_TYPE = "application/vnd.cyclonedx+json"  # the SBOM artifact's type in the registry
SIF_FORMAT = "cyclonedx-json"  # the SIF SBOM object's format (siftool's name for it)
NAMESPACE = uuid.UUID("6f0c3a5e-2b1f-4c4e-9a59-8e3a7d1c2b10")  # imagekit's serial numbers


def _purls(packages: Packages, architecture: str) -> list[PackageURL]:
    found = [PackageURL("deb", "debian", name, version, {"arch": architecture})
             for name, version in packages.debian.items()]
    found += [PackageURL("pypi", None, name, version) for name, version in packages.pip.items()]
    found += [PackageURL("cran", None, name, version) for name, version in packages.r.items()]
    for name, version in packages.npm.items():
        scope, _, bare = name.rpartition("/")
        found.append(PackageURL("npm", scope or None, bare, version))
    return found


def make_sbom(image: str, image_id: str, repository: str, packages: Packages, *,
              architecture: str, created: str) -> str:
    """The SBOM of one image, as CycloneDX 1.6 JSON text."""
    bom = Bom(serial_number=uuid.uuid5(NAMESPACE, image_id))
    bom.metadata.timestamp = _time(created)
    subject = Component(name=image, version=image_id, type=ComponentType.CONTAINER,
                        bom_ref=image_id, group=repository.rpartition("/")[0],
                        description=f"{repository} (image ID {image_id})")
    bom.metadata.component = subject
    bom.metadata.tools.components.add(Component(name="imagekit", version=__version__,
                                                type=ComponentType.APPLICATION))
    components = []
    for purl in _purls(packages, architecture):
        component = Component(name=purl.name, version=purl.version, group=purl.namespace,
                              type=ComponentType.LIBRARY, purl=purl, bom_ref=purl.to_string())
        bom.components.add(component)
        components.append(component)
    bom.register_dependency(subject, components)
    # Sorted keys: the text depends on the inputs only, not on the library's field order.
    return json.dumps(json.loads(JsonV1Dot6(bom).output_as_string()), indent=1,
                      sort_keys=True) + "\n"


def _time(created: str) -> dt.datetime:
    try:
        return dt.datetime.fromisoformat(created.replace("Z", "+00:00"))
    except ValueError:
        return dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
