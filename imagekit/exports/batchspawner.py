"""batchspawner on Slurm: one wrapspawner profile per SIF, and an OptionsFormSpawner form.

Each job runs `apptainer exec [--no-https] [--nv] [--bind ...] SIF batchspawner-singleuser
...`, the script `imagekit spawner batchspawner` prints (hpc.batch_script). The SIF is the
site's shared copy when the catalog names one (`sif.path`), else the `oras://...@sha256:`
reference, which apptainer pulls into the user's cache on first use; a registry that speaks
plain HTTP needs `--no-https` on that pull.

Quirks: wrapspawner's ProfilesSpawner preselects, and falls back to, the *first* profile, so
the default image comes first; its profile config becomes keyword arguments of the child
(SlurmSpawner), whose req_* traits are Unicode, so counts are strings. OptionsFormSpawner
(ResearchComputing/jupyterhub-options-spawner, not on PyPI) turns each form field into a
trait of the child, so a `req_image` select reaches the batch script as `{{image}}`; its one
script therefore branches on the image in Jinja to give each SIF its own flags and requests.
"""

from __future__ import annotations

import json
from typing import Any

from imagekit.exports.common import (
    ExportFile,
    header,
    jupyter_default_first,
    label,
    python_literal,
    slurm_cpus,
    slurm_memory,
)
from imagekit.hpc import (
    BATCH_TIME,
    IMPORT_BATCHSPAWNER,
    LOGIN_SPAWNER,
    SshLogin,
    batch_script,
    login_spawner_lines,
    ssh_lines,
)
from imagekit.published.catalog import PublishedCatalog, PublishedImage

RUNTIME = "apptainer"
SPAWNER = "batchspawner.SlurmSpawner"
_TIMEOUTS = ["c.Spawner.http_timeout = 300  # queue waits", "c.Spawner.start_timeout = 600"]


def export(catalog: PublishedCatalog, ssh: SshLogin | None = None) -> list[ExportFile]:
    """`ssh`: the hub reaches Slurm over SSH (`imagekit export batchspawner --ssh`)."""
    images = sif_images(catalog)
    return [ExportFile("batchspawner.py", profiles_config(catalog, images, ssh)),
            ExportFile("optionsformspawner.py", options_form_config(catalog, images, ssh))]


def sif_images(catalog: PublishedCatalog) -> list[PublishedImage]:
    """batchspawner's images that have a SIF, the default Jupyter image first."""
    images = [i for i in catalog.for_consumer("batchspawner") if i.sif is not None]
    return jupyter_default_first(catalog, images)


def sif_location(image: PublishedImage) -> str:
    assert image.sif is not None
    return image.sif.path or image.sif.reference


def script(catalog: PublishedCatalog, image: PublishedImage, login: bool = False) -> str:
    sif = sif_location(image)
    flags = ["--no-https"] if catalog.registry_insecure and sif.startswith("oras://") else []
    return batch_script(image.name, sif, binds=image.binds, gpu=image.gpu, runtime=RUNTIME,
                        exec_flags=flags, login=login) + "\n"


def requests(image: PublishedImage) -> dict[str, str]:
    """The image's resources as SlurmSpawner req_* values (all strings: Unicode traits)."""
    values = {
        "req_runtime": BATCH_TIME,
        "req_nprocs": str(slurm_cpus(image.resources.cpu)),
        "req_memory": slurm_memory(image.resources.memory),
    }
    if image.gpu:
        values["req_gres"] = f"gpu:{image.resources.gpus or 1}"
    return values


def profiles_config(catalog: PublishedCatalog, images: list[PublishedImage],
                    ssh: SshLogin | None = None) -> str:
    profiles: list[tuple[str, str, str, dict[str, Any]]] = [
        (label(image), image.name, SPAWNER,
         {**requests(image), "batch_script": script(catalog, image, ssh is not None)})
        for image in images
    ]
    lines = [header().rstrip("\n")]
    if not profiles:
        return "\n".join([*lines, "# no image with a SIF is published for batchspawner", ""])
    lines += [
        IMPORT_BATCHSPAWNER,
        "",
        'c.JupyterHub.spawner_class = "wrapspawner.ProfilesSpawner"',
        *_TIMEOUTS,
    ]
    if ssh is None:
        lines.append(f"c.ProfilesSpawner.profiles = {python_literal(profiles)}")
    else:
        lines += [
            "",
            *login_spawner_lines(),
            *ssh_lines(ssh),
            f"_profiles = {python_literal(profiles)}",
            "c.ProfilesSpawner.profiles = [",
            f"    (title, key, {LOGIN_SPAWNER}, config) for title, key, _, config in _profiles",
            "]",
        ]
    return "\n".join([*lines, ""])


def options_form_config(catalog: PublishedCatalog, images: list[PublishedImage],
                        ssh: SshLogin | None = None) -> str:
    """OptionsFormSpawner: a select of SIFs, and one script that branches on the choice."""
    lines = [header().rstrip("\n")]
    if not images:
        return "\n".join([*lines, "# no image with a SIF is published for batchspawner", ""])
    choices = [(sif_location(image), label(image)) for image in images]
    lines += [
        IMPORT_BATCHSPAWNER,
        "from optionsspawner.forms import SelectField",
        "",
        'c.JupyterHub.spawner_class = "optionsspawner.OptionsFormSpawner"',
        *_TIMEOUTS,
    ]
    if ssh is None:
        lines.append(f"c.OptionsFormSpawner.child_class = {SPAWNER!r}")
    else:
        lines += ["", *login_spawner_lines(), *ssh_lines(ssh),
                  f"c.OptionsFormSpawner.child_class = {LOGIN_SPAWNER}"]
    lines += [
        "c.OptionsFormSpawner.child_config = " + python_literal({
            "req_runtime": BATCH_TIME,
            "batch_script": branching_script(catalog, images, ssh is not None)}),
        "c.OptionsFormSpawner.form_fields = [",
        "    SelectField(",
        "        'req_image',",
        "        label='Image',",
        "        attr_required=True,",
        f"        choices={python_literal(choices, 8)},",
        f"        default={choices[0][0]!r},",
        "    ),",
        "]",
        "",
    ]
    return "\n".join(lines)


def branching_script(catalog: PublishedCatalog, images: list[PublishedImage],
                     login: bool = False) -> str:
    """One batch_script for all images: `{% if image == SIF %}` that image's script.

    Per-image requests are set inside the branch, as the profiles set them on the child.
    JSON string syntax is also a valid Jinja string literal, whatever the path holds.
    """
    parts = []
    for number, image in enumerate(images):
        keyword = "if" if number == 0 else "elif"
        sets = "".join(f"{{% set {name[4:]} = {json.dumps(value)} %}}"
                       for name, value in requests(image).items() if name != "req_runtime")
        parts.append(f"{{% {keyword} image == {json.dumps(sif_location(image))} %}}{sets}"
                     + script(catalog, image, login))
    parts.append("{% else %}#!/bin/bash\n"
                 "echo \"imagekit: no such image: {{image}}\" >&2\nexit 1\n{% endif %}\n")
    return "".join(parts)
