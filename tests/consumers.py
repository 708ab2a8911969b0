"""The consumers' own schemas and code, at the commits `../shared/consumers/README.md` names.

They sit beside the project, never in it: a test reads them from there, and fails (never
skips) when they are missing.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import yaml

FOLDER = Path(__file__).resolve().parents[1].parent / "shared" / "consumers"


def path(name: str) -> Path:
    found = FOLDER / name
    assert found.exists(), f"{found}: the consumers' files are missing (../shared/consumers/)"
    return found


def crd_schema(name: str, version: str) -> dict[str, Any]:
    """The openAPIV3Schema of a CustomResourceDefinition's served version, from its file
    (Helm templates included: the CRD files of a chart have no template syntax in them)."""
    crd = yaml.safe_load(path(name).read_text())
    assert crd["kind"] == "CustomResourceDefinition", name
    for entry in crd["spec"]["versions"]:
        if entry["name"] == version:
            schema: dict[str, Any] = entry["schema"]["openAPIV3Schema"]
            return schema
    raise AssertionError(f"{name}: no version {version}")


def _strict(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with unknown fields refused where the API server would drop them: an object
    that lists its properties and neither allows others nor preserves unknown fields
    (`kubectl apply --validate=strict` refuses them; a plain apply loses them silently)."""
    schema = copy.deepcopy(schema)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if ("properties" in node and "additionalProperties" not in node
                    and not node.get("x-kubernetes-preserve-unknown-fields")):
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return schema


def crd_errors(document: dict[str, Any], name: str, version: str) -> list[str]:
    """What the CRD's schema refuses in a custom resource (apiVersion, kind and metadata
    are the API server's own, checked by the caller)."""
    validator = jsonschema.Draft7Validator(_strict(crd_schema(name, version)))
    return [f"{'.'.join(str(p) for p in error.absolute_path) or '(top)'}: {error.message}"
            for error in validator.iter_errors(document)]


def crd_names(name: str) -> tuple[str, str, list[str]]:
    """(group, kind, served versions) of a CRD file."""
    crd = yaml.safe_load(path(name).read_text())
    spec = crd["spec"]
    return spec["group"], spec["names"]["kind"], [v["name"] for v in spec["versions"]
                                                  if v.get("served", True)]
