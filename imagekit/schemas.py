"""JSON Schemas of the files a site writes and of the published catalog, for editors and CI."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from imagekit.published.catalog import PublishedCatalog
from imagekit.said import Said
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


def write_or_check(catalog_file: Path, check_only: bool) -> Said:
    """`imagekit schema`: write schemas/ beside the catalog; with `check_only`, each stale
    schema is said (exit 1)."""
    folder = catalog_file.resolve().parent / "schemas"
    if check_only:
        found = stale(folder)
        if found:
            return Said(err=[f"stale: schemas/{name}" for name in found], code=1)
        return Said(["ok: schemas/ is up to date"])
    return Said([f"wrote {path}" for path in write(folder)])
