"""Singularity/Apptainer definition renderer: one self-contained .def per image."""

from __future__ import annotations

from typing import Any

from imagekit.model import Catalog
from imagekit.render.base import Renderer
from imagekit.render.plan import RecipePlan, combined_script


class SingularityRenderer(Renderer):
    template = "Singularity.def.j2"
    filename = "Singularity.def"

    def __init__(self, bootstrap: str = "docker-daemon") -> None:
        super().__init__()
        # docker-daemon: the parent image from the local engine (what `imagekit build` makes);
        # docker: from a registry; docker-archive: from a `docker save` tarball.
        self.bootstrap = bootstrap

    def extra_context(self, catalog: Catalog, recipe: RecipePlan) -> dict[str, Any]:
        return {
            "bootstrap": self.bootstrap,
            "setup_script": combined_script(recipe.image, recipe.setup) if recipe.setup else "",
            "post_script": combined_script(recipe.image, recipe.post) if recipe.post else "",
        }
