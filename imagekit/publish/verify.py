"""`imagekit verify REF`: does what the registry holds match what the catalog says?

For a published image (by name, or REPOSITORY@DIGEST), from the catalog the registry holds:
its manifest is there and holds the tested image ID, its tags point at it, its cosign
signature verifies against the site's public key, its SBOM is the one the catalog names and
describes this image, its test record says what the catalog says, its SIF is the file the
catalog names, and its provenance statement says (signed, when the site signs) that this
SIF was made from this image. An image published for several architectures is checked as its index
(which holds each architecture's manifest, and its tags and signature) and then each
architecture's image as above. Each finding is one line; any failure exits 1.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from rich.markup import escape

from imagekit.attest.provenance import MEDIA_TYPE as PROVENANCE_TYPE
from imagekit.attest.provenance import read_statement
from imagekit.attest.sbom import MEDIA_TYPE as SBOM_TYPE
from imagekit.attest.signing import verify_image
from imagekit.errors import BuildFailed, ImagekitError, Problem
from imagekit.model import Catalog, arch
from imagekit.publish.common import IMMUTABLE, TEST_RECORD_TYPE, previous_catalog
from imagekit.publish.registry import Registry, holds
from imagekit.published.catalog import PublishedCatalog, PublishedImage
from imagekit.said import Markup, Said


@dataclass(frozen=True)
class Finding:
    check: str
    ok: bool
    evidence: str


def find(published: PublishedCatalog, ref: str) -> PublishedImage:
    for image in published.images:
        if ref in (image.name, image.reference) or (
                "@" in ref and ref.rpartition("@")[2] == image.digest):
            return image
    raise ImagekitError(Problem(None, "REF", f"{ref!r} is not an image of the published "
                                             "catalog (a name, or REPOSITORY@DIGEST)"))


def verify(catalog: Catalog, ref: str, public_key: Path | None) -> tuple[PublishedImage,
                                                                         list[Finding]]:
    if public_key is not None and not public_key.is_file():
        raise ImagekitError(Problem(None, "--key", f"{public_key} is not a file"))
    registry = Registry(catalog)
    registry.check()
    published = previous_catalog(catalog, registry)
    if published is None:
        raise ImagekitError("the registry holds no published catalog")
    image = find(published, ref)
    if not image.platforms:
        checks = (_digest, _signature, _sbom, _test_record, _sif, _provenance)
        return image, [c(catalog, registry, image, public_key) for c in checks]
    # An index: itself, its signature and its SIFs' index, then each architecture's image.
    findings = [c(catalog, registry, image, public_key) for c in (_index, _signature)]
    for view, platform in zip(image.views(), image.platforms, strict=True):
        for check in (_digest, _sbom, _test_record, _sif, _provenance):
            found = check(catalog, registry, view, public_key)
            findings.append(Finding(f"{found.check} ({arch(platform.platform)})", found.ok,
                                    found.evidence))
    return image, findings


def _index(catalog: Catalog, registry: Registry, image: PublishedImage,
           key: Path | None) -> Finding:
    """The index holds each architecture's manifest the catalog names, for that platform,
    its tags point at it, and so does the SIFs' index."""
    wanted = {arch(p.platform): p.digest for p in image.platforms}
    for repository, digest, what, members in (
            (image.repository, image.digest, "index", wanted),
            *([(image.sif.repository, image.sif.digest, "SIF index",
                {arch(p.platform): p.sif.digest for p in image.platforms if p.sif})]
              if image.sif else [])):
        found = registry.manifest(repository, digest)
        if found is None:
            return Finding("index", False, f"{repository}@{digest} is not in the registry")
        held = {str(m.get("platform", {}).get("architecture")): m.get("digest")
                for m in found[1].get("manifests", [])}
        if held != members:
            return Finding("index", False, f"the {what} {digest[:19]}… holds {held}, the "
                                           f"catalog says {members}")
        moved = [t for t in image.tags if not t.startswith(IMMUTABLE)
                 and (now := registry.manifest(repository, t)) is not None and now[0] != digest]
        if moved:
            return Finding("index", False, f"tag(s) {', '.join(moved)} of the {what} point "
                                           "elsewhere")
    return Finding("index", True, f"{image.reference} holds "
                   + ", ".join(f"{a} {d[:19]}…" for a, d in wanted.items())
                   + f"; {', '.join(image.tags)} point at it"
                   + (" and at the SIFs' index" if image.sif else ""))


def _digest(catalog: Catalog, registry: Registry, image: PublishedImage,
            key: Path | None) -> Finding:
    found = registry.manifest(image.repository, image.digest)
    if found is None:
        return Finding("digest", False, f"{image.reference} is not in the registry")
    config = found[1].get("config", {}).get("digest")
    if not holds(image.image_id, found[0], found[1]):
        return Finding("digest", False, f"{image.reference} holds {config}, the catalog says "
                                        f"the tested image was {image.image_id}")
    moved = [t for t in image.tags if not t.startswith(IMMUTABLE)
             and (now := registry.manifest(image.repository, t)) is not None
             and now[0] != image.digest]
    if moved:
        return Finding("digest", False, f"tag(s) {', '.join(moved)} point elsewhere")
    return Finding("digest", True, f"{image.reference} holds {image.image_id[:19]}…; "
                                   f"{', '.join(image.tags)} point at it")


def _signature(catalog: Catalog, registry: Registry, image: PublishedImage,
               key: Path | None) -> Finding:
    if image.signature is None:
        return Finding("signature", False, "the catalog records no signature: the image was "
                                           "published without IMAGEKIT_COSIGN_KEY")
    if key is None:
        return Finding("signature", False, "pass the site's cosign public key (--key "
                                           "cosign.pub) to check it")
    pem = key.read_text().strip().encode()
    if hashlib.sha256(pem).hexdigest() != image.signature.public_key_sha256:
        return Finding("signature", False, f"{key} is not the key the catalog says the image "
                                           "was signed with")
    try:
        payload = verify_image(image.reference, key, insecure=catalog.insecure_registry,
                               ca_bundle=catalog.site.ca_bundle,
                               credentials=registry.credentials)
    except BuildFailed as exc:
        return Finding("signature", False, str(exc))
    claims = json.loads(payload)
    signed = {c["critical"]["image"]["docker-manifest-digest"] for c in claims}
    ok = image.digest in signed
    return Finding("signature", ok, f"cosign verified a signature of {image.digest[:19]}… "
                                    f"with {key.name}" if ok else
                   f"the signatures found name {sorted(signed)}, not {image.digest}")


def _referrer(registry: Registry, image: PublishedImage, digest: str, kind: str,
              artifact_type: str) -> tuple[bytes | None, str]:
    listed = {str(r["digest"]): r for r in registry.referrers(image.repository, image.digest)}
    if digest not in listed:
        return None, f"the registry lists no {kind} {digest[:19]}… referring to the image"
    found = registry.manifest(image.repository, digest)
    if found is None:
        return None, f"the {kind} {digest[:19]}… is listed but not in the registry"
    manifest = found[1]
    if manifest.get("artifactType") != artifact_type:
        return None, f"the {kind} {digest[:19]}… is a {manifest.get('artifactType')}"
    if (manifest.get("subject") or {}).get("digest") != image.digest:
        return None, f"the {kind} {digest[:19]}… refers to another manifest"
    layers = manifest.get("layers", [])
    if len(layers) != 1:
        return None, f"the {kind} {digest[:19]}… is not one document"
    data = registry.blob(image.repository, str(layers[0]["digest"]))
    if "sha256:" + hashlib.sha256(data).hexdigest() != layers[0]["digest"]:
        return None, f"the {kind}'s document does not match its digest"
    return data, ""


def _sbom(catalog: Catalog, registry: Registry, image: PublishedImage,
          key: Path | None) -> Finding:
    if image.sbom is None:
        return Finding("sbom", False, "the catalog names no SBOM for the image")
    data, why = _referrer(registry, image, image.sbom.digest, "SBOM", SBOM_TYPE)
    if data is None:
        return Finding("sbom", False, why)
    if hashlib.sha256(data).hexdigest() != image.sbom.sha256:
        return Finding("sbom", False, "the SBOM in the registry is not the one the catalog "
                                      "names")
    document = json.loads(data)
    subject = document.get("metadata", {}).get("component", {}).get("version")
    if image.sbom.media_type != SBOM_TYPE or subject != image.image_id:
        return Finding("sbom", False, f"the SBOM describes {subject}, not {image.image_id}")
    return Finding("sbom", True, f"{len(document.get('components', []))} components, "
                                 f"describing {image.image_id[:19]}…")


def _test_record(catalog: Catalog, registry: Registry, image: PublishedImage,
                 key: Path | None) -> Finding:
    tested = image.tested
    if tested.status != "passed" or tested.record is None:
        return Finding("test record", False, f"the image was published {tested.status}, "
                                             "with no test record")
    data, why = _referrer(registry, image, tested.record, "test record", TEST_RECORD_TYPE)
    if data is None:
        return Finding("test record", False, why)
    record = json.loads(data)
    same = (record.get("image_id") == image.image_id and record.get("passed") == tested.passed
            and record.get("failed") == tested.failed == 0
            and record.get("checks") == tested.checks)
    return Finding("test record", same,
                   f"{tested.passed} checks passed on {image.image_id[:19]}… "
                   f"({record.get('tested_at')})" if same else
                   "the test record in the registry does not say what the catalog says")


def _sif(catalog: Catalog, registry: Registry, image: PublishedImage,
         key: Path | None) -> Finding:
    if image.sif is None:
        return Finding("sif", True, "the image has no SIF")
    found = registry.manifest(image.sif.repository, image.sif.digest)
    if found is None:
        return Finding("sif", False, f"{image.sif.reference} is not in the registry")
    layers = found[1].get("layers", [])
    ok = len(layers) == 1 and layers[0].get("digest") == f"sha256:{image.sif.sha256}"
    signed = f", signed by {image.sif.signed_by}" if image.sif.signed_by else ", unsigned"
    return Finding("sif", ok, f"{image.sif.reference} holds {image.sif.filename}{signed}"
                   if ok else f"{image.sif.reference} does not hold the SIF the catalog names")


def _provenance(catalog: Catalog, registry: Registry, image: PublishedImage,
                key: Path | None) -> Finding:
    """The statement that binds the image and its SIF: the one the catalog names, about
    this image, naming this SIF as made from this image ID, and signed with the key."""
    named = image.provenance
    if named is None:  # published (or pinned to an image published) before there was one
        return Finding("provenance", True, "none: published before imagekit wrote provenance "
                                           "statements, so nothing binds its SIF to it")
    data, why = _referrer(registry, image, named.digest, "provenance statement",
                          PROVENANCE_TYPE)
    if data is None:
        return Finding("provenance", False, why)
    if hashlib.sha256(data).hexdigest() != named.sha256:
        return Finding("provenance", False, "the statement in the registry is not the one "
                                            "the catalog names")
    try:
        bound = read_statement(data)
    except ValueError as exc:
        return Finding("provenance", False, f"the statement is not imagekit's: {exc}")
    if bound.image_digest != image.digest or bound.image_id != image.image_id:
        return Finding("provenance", False, f"the statement is about {bound.image_digest} "
                                            f"({bound.image_id}), not this image")
    if image.sif is not None and bound.sif_sha256 != image.sif.sha256:
        return Finding("provenance", False, f"the statement names another SIF (sha256 "
                                            f"{bound.sif_sha256[:12]}…), not "
                                            f"{image.sif.filename}")
    if image.sif is not None and bound.sif_from != image.image_id:
        return Finding("provenance", False, f"{image.sif.filename} was made from "
                                            f"{bound.sif_from or 'an unknown image'}, not "
                                            f"the image {image.image_id}")
    made = (f"{image.sif.filename} (sha256 {image.sif.sha256[:12]}…) was made from "
            f"{image.image_id[:19]}…, which {image.digest[:19]}… holds"
            if image.sif is not None else f"about {image.digest[:19]}…, no SIF")
    if not named.signed:
        return Finding("provenance", True, f"{made}; the statement is unsigned")
    if key is None:
        return Finding("provenance", True, f"{made}; signed (pass --key to check it)")
    try:
        verify_image(named.reference, key, insecure=catalog.insecure_registry,
                     ca_bundle=catalog.site.ca_bundle, credentials=registry.credentials)
    except BuildFailed as exc:
        return Finding("provenance", False, f"the statement's signature: {exc}")
    return Finding("provenance", True, f"{made}; cosign verified the statement with "
                                       f"{key.name}")


def report(catalog: Catalog, ref: str, public_key: Path | None) -> Said:
    """`imagekit verify`: the image's reference, then a PASS or FAIL line per finding; exit 1
    when one failed."""
    image, findings = verify(catalog, ref, public_key)
    lines = [Markup(f"{'[green]PASS[/]' if f.ok else '[red]FAIL[/]'} {f.check}: "
                    f"{escape(f.evidence)}") for f in findings]
    return Said([f"{image.name}: {image.reference}", *lines],
                data={"image": image.name, "reference": image.reference,
                      "findings": [asdict(f) for f in findings]},
                code=0 if all(f.ok for f in findings) else 1)
