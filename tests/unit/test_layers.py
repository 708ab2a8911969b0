"""The data path runs one way: what publishing writes is read below it, never the reverse.
Given imagekit's sources, the modules below publish/ import nothing from it, and the
published-catalog model imports only the errors and the schema's types."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "imagekit"


def imported(path: Path) -> set[str]:
    """Every imagekit module a source file imports, at its top or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m == "imagekit" or m.startswith("imagekit.")}


def sources(*names: str) -> list[Path]:
    return [p for n in names for p in
            (sorted((PACKAGE / n).rglob("*.py")) if (PACKAGE / n).is_dir() else [PACKAGE / n])]


@pytest.mark.parametrize("path", sources("exports", "site", "published", "attest", "sif.py"),
                         ids=lambda p: str(p.relative_to(PACKAGE)))
def test_what_publishing_reads_or_uses_does_not_import_publishing(path: Path) -> None:
    assert not {m for m in imported(path)
                if m == "imagekit.publish" or m.startswith("imagekit.publish.")}


def test_the_published_catalog_model_imports_only_errors_and_schema() -> None:
    allowed = {"imagekit.errors", "imagekit.schema"}
    for path in sources("published"):
        assert {".".join(m.split(".")[:2]) for m in imported(path)} <= allowed, path
