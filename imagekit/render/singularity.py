"""Singularity/Apptainer definition renderer: one self-contained .def per image."""

from __future__ import annotations

from typing import Any

from imagekit.model import Catalog
from imagekit.render.base import Renderer
from imagekit.render.plan import RecipePlan, combined_script


class SingularityRenderer(Renderer):
    template = "Singularity.def.j2"
    filename = "Singularity.def"

    def __init__(self, bootstrap: str = "docker-daemon", converted_from: str | None = None,
                 converted_id: str = "") -> None:
        super().__init__()
        # docker-daemon: the parent image from the local engine (what `imagekit build` makes);
        # docker: from a registry; docker-archive: from a `docker save` tarball.
        self.bootstrap = bootstrap
        # Given: the definition of a SIF converted from this built image (the SIF embeds it),
        # which bootstraps from the image itself and only adds Apptainer's scripts.
        self.converted_from = converted_from
        self.converted_id = converted_id

    def extra_context(self, catalog: Catalog, recipe: RecipePlan) -> dict[str, Any]:
        return {
            "bootstrap": self.bootstrap,
            "converted": self.converted_from is not None,
            "converted_id": self.converted_id,
            "from_ref": self.converted_from or recipe.from_ref,
            "setup_script": combined_script(recipe.image, recipe.setup) if recipe.setup else "",
            "post_script": combined_script(recipe.image, recipe.post) if recipe.post else "",
        }
