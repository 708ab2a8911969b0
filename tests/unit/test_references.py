"""Image references are split where Docker splits them: a registry port is not a tag."""

from __future__ import annotations

import pytest

from imagekit.engine.client import split_reference


@pytest.mark.parametrize(("ref", "repository", "tag"), [
    ("debian:bookworm", "debian", "bookworm"),
    ("debian", "debian", "latest"),
    ("imagekit/debian:bookworm", "imagekit/debian", "bookworm"),
    ("localhost:5000/debian", "localhost:5000/debian", "latest"),
    ("registry.example.org:5000/ns/debian:bookworm", "registry.example.org:5000/ns/debian",
     "bookworm"),
    ("127.0.0.1:5055/imagekit/scipy:python-3.11.2", "127.0.0.1:5055/imagekit/scipy",
     "python-3.11.2"),
])
def test_split_reference(ref: str, repository: str, tag: str) -> None:
    assert split_reference(ref) == (repository, tag)
