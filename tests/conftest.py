"""Shared fixtures: a private copy of the project's catalog for each test that edits one."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from imagekit.cli import app
from imagekit.model import Catalog
from imagekit.resolve import load_catalog

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of catalog.yaml, stacks/, profiles/ and recipes/ that a test may change."""
    for name in ("stacks", "profiles", "recipes", "schemas"):
        shutil.copytree(ROOT / name, tmp_path / name)
    shutil.copy(ROOT / "catalog.yaml", tmp_path / "catalog.yaml")
    return tmp_path


@pytest.fixture
def catalog() -> Catalog:
    return load_catalog(ROOT / "catalog.yaml")


@pytest.fixture
def cli() -> Callable[..., tuple[int, str]]:
    runner = CliRunner()

    def invoke(*args: str) -> tuple[int, str]:
        result = runner.invoke(app, list(args), catch_exceptions=False)
        return result.exit_code, result.output

    return invoke
