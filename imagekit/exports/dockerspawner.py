"""DockerSpawner's image choice: `allowed_images` (label -> digest reference) and `image`.

Quirks of DockerSpawner 14: with a dict, the form shows and posts the *label*, and the label
is resolved to the image only in start() (`check_allowed`), which refuses anything not in
the dict; the form marks an option `selected` only when its label equals `image`, which a
label never does, so the browser selects the first option: the default image comes first.
Labels go into that HTML unescaped (see common.label). DockerSpawner has one `default_url`
for all images, so code-server and RStudio images open in JupyterLab, from where their
launcher tiles (jupyter-server-proxy) lead on.

And DockerSpawner 14 cannot pull a reference by digest: pull_image() splits
`repo@sha256:HEX` at its last colon and asks the daemon for the tag HEX of `repo@sha256`,
which no registry has, so a spawn fails on every host that has not got the image yet (seen
in the end-to-end test, whose hub host never built it). The export adds a pre-spawn hook that
pulls the chosen image by its digest when the host lacks it; DockerSpawner then finds it
present (`pull_policy` "ifnotpresent": a digest never moves, and "always" would take its own
broken pull again).
"""

from __future__ import annotations

from imagekit.exports.common import ExportFile, header, jupyter_default_first, label, python_literal
from imagekit.published.catalog import PublishedCatalog, PublishedImage


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
    lines += ["", *PULL_BY_DIGEST.splitlines(), ""]
    return [ExportFile("dockerspawner.py", "\n".join(lines))]


PULL_BY_DIGEST = """\
# DockerSpawner 14 pulls `repo@sha256:...` as a tag that does not exist: the image the user
# picked is pulled by its digest here first, when the host lacks it. A site with a
# pre_spawn_hook of its own calls this one from it.
c.DockerSpawner.pull_policy = "ifnotpresent"


async def imagekit_pull_by_digest(spawner):
    import docker.errors

    chosen = spawner.user_options.get("image")
    allowed = spawner.allowed_images
    if chosen and not (isinstance(allowed, dict) and chosen in allowed):
        return  # DockerSpawner refuses it in start()
    reference = allowed[chosen] if chosen else spawner.image
    repository, _, digest = reference.partition("@")
    if not digest:
        return
    try:
        await spawner.docker("inspect_image", reference)
    except docker.errors.NotFound:
        spawner.log.info("pulling %s by its digest", reference)
        await spawner.docker("pull", repository, digest)


c.DockerSpawner.pre_spawn_hook = imagekit_pull_by_digest"""


def ordered_images(catalog: PublishedCatalog) -> list[PublishedImage]:
    """DockerSpawner's images, the default Jupyter image first (the form preselects it)."""
    return jupyter_default_first(catalog, catalog.for_consumer("dockerspawner"))
