"""Given a BuildKit recipe, when the classic builder gets it, then it gets one without mounts:
cache and secret mounts dropped, a bind mount copied in, every RUN kept as it was."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from imagekit.engine.builders import classic_dockerfile

ROOT = Path(__file__).resolve().parents[2]
RECIPES = sorted(ROOT.glob("recipes/*/Dockerfile"))


def runs(text: str) -> int:
    return len(re.findall(r"^RUN ", text, re.M))


def test_a_cache_mount_is_dropped_and_the_continuation_kept() -> None:
    text = ("RUN --mount=type=cache,target=/var/cache/apt,sharing=locked \\\n"
            "    apt-get update \\\n"
            "    && apt-get install -y curl\n")
    assert classic_dockerfile(text) == ("RUN apt-get update \\\n"
                                        "    && apt-get install -y curl\n")


def test_secret_mounts_are_dropped() -> None:
    text = ("RUN --mount=type=secret,id=pip_index_url \\\n"
            "    --mount=type=secret,id=pip_extra_index_url \\\n"
            "    uv pip install six\n")
    assert classic_dockerfile(text) == "RUN uv pip install six\n"


def test_a_bind_mount_becomes_a_copy_before_its_run() -> None:
    text = ("FROM debian\n"
            "RUN --mount=type=cache,target=/root/.cache/uv \\\n"
            "    --mount=type=bind,source=wheelhouse,target=/tmp/imagekit-wheelhouse \\\n"
            "    uv pip install --find-links /tmp/imagekit-wheelhouse six \\\n"
            "    && true\n"
            "USER 1000\n")
    assert classic_dockerfile(text) == (
        "FROM debian\n"
        "COPY wheelhouse /tmp/imagekit-wheelhouse\n"
        "RUN uv pip install --find-links /tmp/imagekit-wheelhouse six \\\n"
        "    && true\n"
        "USER 1000\n")


def test_mounts_on_the_line_of_the_command() -> None:
    text = ("RUN --mount=type=cache,target=/root/.npm "
            "--mount=type=bind,source=wheelhouse,target=/w npm install x\n")
    assert classic_dockerfile(text) == "COPY wheelhouse /w\nRUN npm install x\n"


def test_a_recipe_without_mounts_is_unchanged() -> None:
    text = "FROM debian\nRUN echo --mount=not-a-flag \\\n    && true\nLABEL a=\"b\"\n"
    assert classic_dockerfile(text) == text


@pytest.mark.parametrize("path", RECIPES, ids=[p.parent.name for p in RECIPES])
def test_every_rendered_recipe_loses_its_mounts_and_keeps_its_runs(path: Path) -> None:
    text = path.read_text()
    rewritten = classic_dockerfile(text)
    assert "--mount" not in rewritten
    assert runs(rewritten) == runs(text)
    binds = len(re.findall(r"--mount=type=bind", text))
    copies = len(re.findall(r"^COPY ", rewritten, re.M)) - len(re.findall(r"^COPY ", text, re.M))
    assert copies == binds
    # Nothing but the mounts goes: every other word is still there, in order.
    added = {f"COPY {m[0]} {m[1]}" for m in re.findall(
        r"--mount=type=bind,source=([^,\s]+),target=([^,\s]+)", text)}
    new = "\n".join(line for line in rewritten.split("\n") if line not in added)
    assert words(new) == [w for w in words(text) if not w.startswith("--mount=")]


def words(text: str) -> list[str]:
    return [w for w in text.split() if w not in ("RUN", "\\")]


def test_the_recipes_are_there_to_compare_with() -> None:
    assert len(RECIPES) >= 5
    assert any("--mount=type=bind" in p.read_text() for p in RECIPES)
