"""The SBOM of an image: CycloneDX 1.6 JSON that CycloneDX's own schema accepts, one
component per package of every kind, the same bytes for the same image."""

from __future__ import annotations

import json

from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from imagekit.attest.sbom import make_sbom
from imagekit.published.catalog import Packages

PACKAGES = Packages(
    debian={"bash": "5.2.15-2+b7", "libc6": "2.36-9+deb12u13"},
    pip={"jupyterlab": "4.6.6", "numpy": "2.3.4"},
    r={"ggplot2": "3.5.2"},
    npm={"@jupyterlab/builder": "4.6.6", "configurable-http-proxy": "4.6.3"},
)
IMAGE_ID = "sha256:" + "ab" * 32


def sbom(packages: Packages = PACKAGES, created: str = "2026-11-30T08:00:00+00:00") -> str:
    return make_sbom("scipy", IMAGE_ID, "127.0.0.1:5055/imagekit/scipy", packages,
                     architecture="amd64", created=created)


def test_cyclonedx_accepts_it() -> None:
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(sbom()) is None


def test_every_package_is_a_component_with_its_package_url() -> None:
    document = json.loads(sbom())
    purls = {c["purl"] for c in document["components"]}
    assert purls == {
        "pkg:deb/debian/bash@5.2.15-2%2Bb7?arch=amd64",
        "pkg:deb/debian/libc6@2.36-9%2Bdeb12u13?arch=amd64",
        "pkg:pypi/jupyterlab@4.6.6", "pkg:pypi/numpy@2.3.4",
        "pkg:cran/ggplot2@3.5.2",
        "pkg:npm/%40jupyterlab/builder@4.6.6", "pkg:npm/configurable-http-proxy@4.6.3",
    }
    subject = document["metadata"]["component"]
    assert (subject["type"], subject["name"], subject["version"]) == (
        "container", "scipy", IMAGE_ID)
    [image] = [d for d in document["dependencies"] if d["ref"] == IMAGE_ID]
    assert set(image["dependsOn"]) == purls


def test_the_same_image_gives_the_same_bytes() -> None:
    assert sbom() == sbom()
    assert json.loads(sbom())["metadata"]["timestamp"].startswith("2026-11-30T08:00:00")
    other = Packages(debian={"bash": "5.2.15-2+b8"})
    assert sbom(other) != sbom()
