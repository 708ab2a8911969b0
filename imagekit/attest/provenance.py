"""The provenance that binds an image and the SIF made from it.

No format binds the two on its own: the image's manifest knows nothing of the SIF, and the
SIF's header nothing of the registry. For every published image imagekit pushes an in-toto
Statement (v1) with a SLSA Provenance (v1) predicate as an OCI referrer of the image, signed
with the site's cosign key when one is set. Its subjects are the image's manifest and the
SIF file; the predicate names the image ID the SIF was converted from, the tree key, the
lock files and the parent and base images (by digest), and the builder. `imagekit verify`
reads it back and checks that the SIF the catalog names was made from the image it names.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

MEDIA_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
# What the build parameters below mean (docs/admin.md, "Provenance").
BUILD_TYPE = "urn:imagekit:build:image-and-sif:v1"
BUILDER_ID = "urn:imagekit:builder"


@dataclass(frozen=True)
class Dependency:
    name: str  # "base", "parent" or a lock file's path in the checkout
    sha256: str  # hex
    uri: str = ""  # an image reference, when it has one


@dataclass(frozen=True)
class Provenance:
    image: str  # the catalog's name
    repository: str
    digest: str  # the image's manifest digest in the registry
    image_id: str  # the tested image (its config digest)
    platform: str
    stack: str
    profiles: tuple[str, ...]
    tree_key: str
    dependencies: tuple[Dependency, ...]
    imagekit: str  # imagekit's version
    engine: str  # the engine that built it, "docker 20.10.24"
    created: str  # the image's build time (RFC 3339)
    sif_file: str = ""  # the SIF's file name; "" when the image has none
    sif_sha256: str = ""  # hex
    sif_from: str = ""  # the image ID the SIF was converted from (its conversion record)

    def statement(self) -> bytes:
        """The in-toto Statement, as JSON."""
        subjects: list[dict[str, Any]] = [
            {"name": self.repository, "digest": {"sha256": _hex(self.digest)}}]
        if self.sif_sha256:
            subjects.append({"name": self.sif_file, "digest": {"sha256": self.sif_sha256},
                             "mediaType": "application/vnd.sylabs.sif.layer.v1.sif"})
        internal: dict[str, Any] = {"treeKey": self.tree_key, "imageId": self.image_id}
        if self.sif_sha256:
            internal["sifConvertedFrom"] = self.sif_from
        predicate = {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {"image": self.image, "stack": self.stack,
                                       "profiles": list(self.profiles),
                                       "platform": self.platform},
                "internalParameters": internal,
                "resolvedDependencies": [
                    {"name": d.name, **({"uri": d.uri} if d.uri else {}),
                     "digest": {"sha256": d.sha256}} for d in self.dependencies],
            },
            "runDetails": {
                "builder": {"id": BUILDER_ID,
                            "version": {"imagekit": self.imagekit, "engine": self.engine}},
                "metadata": {"finishedOn": self.created},
            },
        }
        statement = {"_type": STATEMENT_TYPE, "subject": subjects,
                     "predicateType": PREDICATE_TYPE, "predicate": predicate}
        return (json.dumps(statement, indent=2, sort_keys=True) + "\n").encode()


@dataclass(frozen=True)
class Binding:
    """What a statement read back says binds an image and its SIF."""

    image_digest: str  # sha256:...
    sif_sha256: str  # hex, "" when it names no SIF
    sif_from: str
    image_id: str
    tree_key: str


def read_statement(data: bytes) -> Binding:
    """The binding a statement states; ValueError when it is not imagekit's provenance."""
    try:
        statement = json.loads(data)
        if statement.get("_type") != STATEMENT_TYPE:
            raise ValueError(f"not an in-toto Statement v1 ({statement.get('_type')})")
        if statement.get("predicateType") != PREDICATE_TYPE:
            raise ValueError(f"not SLSA provenance v1 ({statement.get('predicateType')})")
        definition = statement["predicate"]["buildDefinition"]
        if definition.get("buildType") != BUILD_TYPE:
            raise ValueError(f"another build type ({definition.get('buildType')})")
        internal = definition["internalParameters"]
        subjects = statement["subject"]
        sif = [s for s in subjects[1:] if s.get("digest", {}).get("sha256")]
        return Binding(image_digest="sha256:" + str(subjects[0]["digest"]["sha256"]),
                       sif_sha256=str(sif[0]["digest"]["sha256"]) if sif else "",
                       sif_from=str(internal.get("sifConvertedFrom", "")),
                       image_id=str(internal.get("imageId", "")),
                       tree_key=str(internal.get("treeKey", "")))
    except (KeyError, IndexError, TypeError, AttributeError) as exc:
        raise ValueError(f"the statement lacks {exc}") from None


def _hex(digest: str) -> str:
    return digest.removeprefix("sha256:")
