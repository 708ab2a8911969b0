"""Dockerfile renderer: one Dockerfile plus the setup/post scripts it COPYs."""

from __future__ import annotations

from typing import Any

from imagekit.model import Catalog
from imagekit.render.base import Renderer
from imagekit.render.plan import RecipePlan, combined_script


def _literal(value: str) -> str:
    # Docker expands $VAR in LABEL values; labels are data, so keep them literal.
    return value.replace("$", "\\$")


class DockerRenderer(Renderer):
    template = "Dockerfile.j2"
    filename = "Dockerfile"

    def extra_context(self, catalog: Catalog, recipe: RecipePlan) -> dict[str, Any]:
        return {
            "env_pairs": [f'{k}="{v}"' for k, v in recipe.env],
            "label_pairs": [f'{k}="{_literal(v)}"' for k, v in recipe.labels],
        }

    def companions(self, recipe: RecipePlan) -> dict[str, str]:
        out = {}
        if recipe.setup:
            out["scripts/setup.sh"] = combined_script(recipe.image, recipe.setup)
        if recipe.post:
            out["scripts/post.sh"] = combined_script(recipe.image, recipe.post)
        return out
