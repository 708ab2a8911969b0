"""JSON Schemas of the files a site writes and of the published catalog, for editors and CI."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from imagekit.published.catalog import PublishedCatalog
from imagekit.schema import CatalogSpec, ProfileSpec, StackSpec

SCHEMAS: dict[str, type[BaseModel]] = {
    "catalog.schema.json": CatalogSpec,
    "stack.schema.json": StackSpec,
    "profile.schema.json": ProfileSpec,
    # dist/catalog.json, what `imagekit publish` writes and every export reads
    "published-catalog.schema.json": PublishedCatalog,
}


def render(name: str) -> str:
    model = SCHEMAS[name]
    document = model.model_json_schema()
    document["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    document["title"] = name.split(".")[0]
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def write(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in SCHEMAS:
        path = folder / name
        path.write_text(render(name))
        paths.append(path)
    return paths


def stale(folder: Path) -> list[str]:
    return [
        name for name in SCHEMAS
        if not (folder / name).is_file() or (folder / name).read_text() != render(name)
    ]
