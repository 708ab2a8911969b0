"""The notebook image Setting of the oneblock / LLMOS platforms.

`setting.yaml` is oneblock's (management.oneblock.ai/v1), `setting-llmos.yaml` its
successor's (llmos-operator, management.llmos.ai/v1). Both name it `default-notebook-images`:
what oneblock's server and dashboard read (oneblock pkg/settings/settings.go), and what the
llmos operator reads; seed 003's `notebook-default-images` is only the enhancement
document's example, which no code reads. Rancher-style settings: each operator rewrites
`default` with its built-in list at every start and serves `value` when it is set
(oneblock pkg/controller/setting/setting.go), so the site's choice goes in `value`.

The JSON is a string (the CRD field is a string), keyed by notebook type, each entry
`{containerImage, description, default?}` like the operator's Go `Image` struct (`default`
is `omitempty`). Every type key is written, empty when nothing was published for it: the
dashboard does `images[notebookType].map(...)` and would throw on a missing key.
"""

from __future__ import annotations

import json
from typing import Any

from imagekit.exports.common import ExportFile, by_type, default_image, yaml_text
from imagekit.published.catalog import PublishedCatalog

NAME = "default-notebook-images"  # the Setting both platforms' code reads
# Keep the JSON string on one line, as in the seed, instead of folded at 100 columns.
ONE_LINE = 1 << 30


def export(catalog: PublishedCatalog) -> list[ExportFile]:
    images = images_json(catalog)
    return [
        ExportFile("setting.yaml", yaml_text(setting(
            "management.oneblock.ai/v1", NAME, images), width=ONE_LINE)),
        ExportFile("setting-llmos.yaml", yaml_text(setting(
            "management.llmos.ai/v1", NAME, images), width=ONE_LINE)),
    ]


def setting(api_version: str, name: str, text: str) -> dict[str, Any]:
    return {"apiVersion": api_version, "kind": "Setting", "metadata": {"name": name},
            "value": text}


def images_json(catalog: PublishedCatalog) -> str:
    groups: dict[str, list[dict[str, Any]]] = {}
    # Sorted type keys, compact separators, empty fields left out: how Go's json.Marshal
    # writes the operator's own map[string][]Image, so diffs against it stay small.
    for kind, images in sorted(by_type(catalog.for_consumer("setting")).items()):
        default = default_image(catalog, images)
        entries: list[dict[str, Any]] = []
        for image in images:
            entry: dict[str, Any] = {"containerImage": image.reference}
            if image.description:
                entry["description"] = image.description
            if image is default:
                entry["default"] = True
            entries.append(entry)
        groups[kind] = entries
    return json.dumps(groups, separators=(",", ":"), ensure_ascii=False)
