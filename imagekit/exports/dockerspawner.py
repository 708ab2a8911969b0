"""DockerSpawner's image choice: `allowed_images` (label -> digest reference) and `image`.

Quirks of DockerSpawner 14: with a dict, the form shows and posts the *label*, and the label
is resolved to the image only in start() (`check_allowed`), which refuses anything not in
the dict; the form marks an option `selected` only when its label equals `image`, which a
label never does, so the browser selects the first option: the default image comes first.
Labels go into that HTML unescaped (see common.label). DockerSpawner has one `default_url`
for all images, so code-server and RStudio images open in JupyterLab, from where their
launcher tiles (jupyter-server-proxy) lead on.
"""

from __future__ import annotations

from imagekit.exports import ExportFile
from imagekit.exports.common import header, jupyter_default_first, label, python_literal
from imagekit.publish.catalog import PublishedCatalog, PublishedImage


def export(catalog: PublishedCatalog) -> list[ExportFile]:
    images = ordered_images(catalog)
    if not images:
        return [ExportFile("dockerspawner.py", header() + "# no image is published for "
                                                          "DockerSpawner\n")]
    allowed = {label(image): image.reference for image in images}
    lines = [
        header().rstrip("\n"),
        "# A subclass (e.g. SystemUserSpawner) reads c.DockerSpawner too: set it after this.",
        'c.JupyterHub.spawner_class = "dockerspawner.DockerSpawner"',
        f"c.DockerSpawner.image = {images[0].reference!r}",
        f"c.DockerSpawner.allowed_images = {python_literal(allowed)}",
    ]
    gpu = [image.name for image in images if image.gpu]
    if gpu:
        # DockerSpawner has no per-image settings: GPUs are the host config of every container.
        lines += [f"# GPU images ({', '.join(gpu)}) see GPUs only with, e.g.,",
                  "# c.DockerSpawner.extra_host_config = {\"device_requests\": [{\"Driver\": "
                  "\"nvidia\", \"Count\": -1, \"Capabilities\": [[\"gpu\"]]}]}"]
    lines.append("")
    return [ExportFile("dockerspawner.py", "\n".join(lines))]


def ordered_images(catalog: PublishedCatalog) -> list[PublishedImage]:
    """DockerSpawner's images, the default Jupyter image first (the form preselects it)."""
    return jupyter_default_first(catalog, catalog.for_consumer("dockerspawner"))
