"""dist/catalog.json: the published catalog, the one document every export is derived from.

It names each image by the digest the registry answered with, never by a moving tag, and
carries what the consumers need (type, GPU, resources, port, binds, which consumers get the
image), what was checked (the test summary) and what is inside (the package manifest). It
also remembers the digests an image was published under before (`history`), so exports
whose consumers keep old values alive (Kubeflow's WorkspaceKind) can be derived from this
document alone, on any machine.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from imagekit.errors import ImagekitError, Problem
from imagekit.schema import Consumer, Name, Platform

SCHEMA_ID: Literal["imagekit.catalog/v1"] = "imagekit.catalog/v1"
NotebookType = Literal["jupyter", "code-server", "rstudio"]
CONTAINER_CONSUMERS: tuple[Consumer, ...] = ("kubespawner", "dockerspawner", "kubeflow",
                                             "workspacekind", "setting", "armada")
SIF_CONSUMERS: tuple[Consumer, ...] = ("batchspawner",)
CONSUMERS: tuple[Consumer, ...] = CONTAINER_CONSUMERS + SIF_CONSUMERS


class Doc(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Resources(Doc):
    cpu: str = Field(description="Kubernetes CPU quantity, e.g. '2' or '500m'")
    memory: str = Field(description="Kubernetes memory quantity, e.g. '4Gi'")
    gpus: int = Field(0, ge=0, description="NVIDIA GPUs (nvidia.com/gpu)")


class TestSummary(Doc):
    status: Literal["passed", "skipped"] = Field(
        description="passed: `imagekit test` passed on this image ID; skipped: published "
                    "with --skip-tests")
    passed: int = 0
    failed: int = 0
    checks: list[str] = []
    tested_at: str | None = None
    record: str | None = Field(
        None, description="digest of the test record in the registry, an OCI referrer of "
                          "the image (`imagekit verify` reads it back)")


class Packages(Doc):
    debian: dict[str, str] = {}
    pip: dict[str, str] = {}
    r: dict[str, str] = {}
    npm: dict[str, str] = {}


class Sif(Doc):
    reference: str = Field(description="oras://REPOSITORY@sha256:... (manifest digest)")
    repository: str
    digest: str = Field(description="digest of the ORAS manifest in the registry")
    sha256: str = Field(description="sha256 of the SIF file itself")
    size: int
    filename: str
    tags: list[str]
    path: str | None = Field(
        None, description="where the cluster sees the file when the site uses a shared "
                          "SIF directory; None when jobs pull the oras:// reference")
    signed_by: str | None = Field(
        None, description="fingerprint of the PGP key the SIF was signed with (`apptainer "
                          "verify` checks it); None: not signed")
    compression: str = Field(
        "gzip", description="its squashfs's compression: gzip (with its level when imagekit "
                            "made it: gzip-5), run by every Apptainer and SingularityCE, or "
                            "zstd-LEVEL, run by Apptainer >= 1.4 only")


class Sbom(Doc):
    """The image's SBOM, an OCI artifact in the image's repository that refers to it."""

    reference: str = Field(description="REPOSITORY@sha256:... of the SBOM artifact, whose "
                                       "subject is the image's manifest")
    digest: str = Field(description="digest of the artifact's manifest")
    sha256: str = Field(description="sha256 of the SBOM document itself")
    media_type: str = Field(description="the SBOM's format, e.g. application/vnd.cyclonedx+json")
    path: str = Field(description="the document beside the catalog, e.g. sbom/scipy.cdx.json")


class Signature(Doc):
    """How the image's manifest digest was signed: a cosign signature, an OCI referrer of
    the image in its registry."""

    tool: Literal["cosign"] = "cosign"
    public_key_sha256: str = Field(description="sha256 of the PEM public key that verifies it")


class Provenance(Doc):
    """The in-toto statement (SLSA provenance v1) that binds the image and its SIF: an OCI
    referrer of the image in its registry, signed with the site's cosign key when one is
    set (imagekit.attest.provenance)."""

    reference: str = Field(description="REPOSITORY@sha256:... of the statement's artifact, "
                                       "whose subject is the image's manifest")
    digest: str = Field(description="digest of the artifact's manifest")
    sha256: str = Field(description="sha256 of the statement document itself")
    signed: bool = Field(description="cosign signed the artifact with the site's key")


class Previous(Doc):
    """A digest the image was published under before, newest first."""

    digest: str
    reference: str
    tags: list[str] = []
    members: list[str] = Field(
        [], description="when the digest is an index: the per-architecture manifests and "
                        "SIFs it held, which retention keeps with it")


class PlatformImage(Doc):
    """One architecture's image of an image published for several."""

    platform: Platform
    digest: str = Field(description="this architecture's manifest digest")
    reference: str = Field(description="REPOSITORY@sha256:... of this architecture's image")
    image_id: str = Field(description="the engine's image ID that was tested: the config's "
                                      "digest (Docker's own image store, Podman), or the "
                                      "manifest's (containerd's image store)")
    tags: list[str] = Field(description="its immutable tag; the moving tags name the index")
    size: int
    tested: TestSummary
    sif: Sif | None = None
    sbom: Sbom | None = None
    provenance: Provenance | None = None


class PublishedImage(Doc):
    name: Name  # as in the model: it reaches batch scripts' #SBATCH lines
    stack: str
    parent: str | None
    profiles: list[str] = []
    type: NotebookType
    gpu: bool
    description: str
    default: bool = Field(description="the default image of its type")
    consumers: list[Consumer]
    resources: Resources
    port: int
    binds: list[str] = []
    repository: str
    digest: str = Field(description="manifest digest read back from the registry")
    reference: str = Field(description="REPOSITORY@sha256:..., what every export uses")
    image_id: str = Field(description="the engine's image ID that was tested: the config's "
                                      "digest (Docker's own image store, Podman), or the "
                                      "manifest's (containerd's image store)")
    tags: list[str]
    size: int = Field(description="bytes in the registry (config and compressed layers)")
    tested: TestSummary
    built_by: str | None = Field(
        None, description="the engine that built the image: engine, version, builder and "
                          "image store, as its io.imagekit.built-by label says; None: built "
                          "before imagekit recorded it")
    sif: Sif | None = None
    packages: Packages = Packages()
    sbom: Sbom | None = None
    signature: Signature | None = None
    provenance: Provenance | None = None
    history: list[Previous] = []
    platforms: list[PlatformImage] = Field(
        [], description="empty for an image published for one architecture. For several: "
                        "one entry each, and then digest and reference name the index (OCI "
                        "image index, or Docker's manifest list) that holds them, which "
                        "every export uses; sif names the index of their SIFs; image_id, "
                        "tested, built_by, size, sbom and packages are the first platform's")

    def views(self) -> list[PublishedImage]:
        """The image as each architecture's own entry (itself when it has one): what
        `imagekit verify` checks against the registry, one architecture at a time."""
        return [self.model_copy(update={
            "digest": p.digest, "reference": p.reference, "image_id": p.image_id,
            "tags": p.tags, "size": p.size, "tested": p.tested, "sif": p.sif, "sbom": p.sbom,
            "provenance": p.provenance, "signature": None, "platforms": []})
            for p in self.platforms] or [self]

    def members(self) -> list[str]:
        """The manifests an index needs kept with it: each platform's image, SBOM, SIF and
        provenance, and the SIFs' index."""
        held = [d for p in self.platforms for d in (
            p.digest, p.sbom.digest if p.sbom else None, p.sif.digest if p.sif else None,
            p.provenance.digest if p.provenance else None)
            if d is not None]
        return held + ([self.sif.digest] if held and self.sif else [])


class LeftOut(Doc):
    name: str
    reason: str


class PublishedCatalog(Doc):
    schema_: Literal["imagekit.catalog/v1"] = Field(SCHEMA_ID, alias="schema")
    registry: str
    namespace: str
    registry_insecure: bool = Field(
        False, description="the registry speaks plain HTTP (oras:// pulls need --no-https)")
    vendor: str = ""
    source: str = ""
    sif_directory: str | None = Field(
        None, description="the cluster's shared SIF directory, if the site has one")
    defaults: dict[NotebookType, str] = Field(
        description="the default image of each type that has a published image")
    images: list[PublishedImage]
    left_out: list[LeftOut] = []

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def image(self, name: str) -> PublishedImage:
        for image in self.images:
            if image.name == name:
                return image
        raise KeyError(name)

    def for_consumer(self, consumer: Consumer) -> list[PublishedImage]:
        return [i for i in self.images if consumer in i.consumers]

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json", by_alias=True), indent=2,
                          sort_keys=True) + "\n"


def parse(text: str, origin: Path | str) -> PublishedCatalog:
    try:
        return PublishedCatalog.model_validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise ImagekitError(Problem(Path(str(origin)), field,
                                    f"not a published catalog: {first['msg']}")) from None


def dist_of(catalog_file: Path) -> Path:
    """dist/ beside a catalog file, where `imagekit publish` writes catalog.json (read
    without loading the catalog: what is published stands on its own)."""
    return catalog_file.resolve().parent / "dist"


def read(path: Path) -> PublishedCatalog:
    if not path.is_file():
        raise ImagekitError(Problem(path, "", "no published catalog here (run `imagekit "
                                              "publish` first, or pass --published FILE)"))
    return parse(path.read_text(), path)
