"""KubeSpawner's `profile_list`: a z2jh values file and the same list for jupyterhub_config.py.

One profile per stack: a stack published as several images (scipy, scipy-hpc) becomes one
profile with an `image` option, so the spawn form stays short. Quirks of KubeSpawner 7.1:

- a choice's `kubespawner_override` is applied after its profile's, and dicts are merged, so
  everything that differs between images (image, resources, GPU, default_url) sits on the
  choice, never half on the profile;
- the key is `image`: `image_spec` is a deprecated alias, and z2jh's image puller pre-pulls
  only `kubespawner_override.image` of profiles and choices;
- `mem_limit`/`mem_guarantee` are JupyterHub ByteSpecifications ("4G" = 4 GiB; "4Gi" is
  refused), `cpu_*` are floats, `extra_resource_limits` values are quantity strings.
"""

from __future__ import annotations

from typing import Any

import yaml

from imagekit.exports.common import (
    ExportFile,
    byte_specification,
    cpu_cores,
    header,
    label,
    python_literal,
)
from imagekit.published.catalog import NotebookType, PublishedCatalog, PublishedImage

# Under JupyterHub the editors are reached through jupyter-server-proxy beneath the
# user's prefix (jupyter-vscode-proxy, jupyter-rsession-proxy), not served at "/".
DEFAULT_URLS: dict[NotebookType, str] = {"code-server": "/vscode/", "rstudio": "/rstudio/"}


def export(catalog: PublishedCatalog) -> list[ExportFile]:
    profiles = profile_list(catalog)
    values = {"singleuser": {"profileList": profiles}}
    text = header() + yaml.safe_dump(values, sort_keys=False, allow_unicode=True)
    python = header() + f"c.KubeSpawner.profile_list = {python_literal(profiles)}\n"
    return [ExportFile("kubespawner.yaml", text), ExportFile("kubespawner.py", python)]


def profile_list(catalog: PublishedCatalog) -> list[dict[str, Any]]:
    images = catalog.for_consumer("kubespawner")
    stacks: dict[str, list[PublishedImage]] = {}
    for image in images:
        stacks.setdefault(image.stack, []).append(image)
    wanted = catalog.defaults.get("jupyter")
    default_stack = next((i.stack for i in images if i.name == wanted), None)
    if default_stack is None and stacks:
        default_stack = next(iter(stacks))
    return [_profile(catalog, stack, members, stack == default_stack)
            for stack, members in stacks.items()]


def _profile(catalog: PublishedCatalog, stack: str, members: list[PublishedImage],
             default: bool) -> dict[str, Any]:
    main = _main_image(catalog, stack, members)
    profile: dict[str, Any] = {
        "display_name": stack if len(members) > 1 else main.name,
        "slug": stack,
        "description": main.description,
        "default": default,
    }
    if len(members) == 1:
        profile["kubespawner_override"] = override(main)
        return profile
    choices: dict[str, Any] = {}
    for image in members:
        choice: dict[str, Any] = {"display_name": label(image)}
        if image is main:
            choice["default"] = True
        choice["kubespawner_override"] = override(image)
        choices[image.name] = choice
    profile["profile_options"] = {"image": {"display_name": "Image", "choices": choices}}
    return profile


def _main_image(catalog: PublishedCatalog, stack: str,
                members: list[PublishedImage]) -> PublishedImage:
    """The catalog's default if the stack holds one, else the stack's own image, else first."""
    defaults = set(catalog.defaults.values())
    return (next((i for i in members if i.name in defaults), None)
            or next((i for i in members if i.name == stack), members[0]))


def override(image: PublishedImage) -> dict[str, Any]:
    """KubeSpawner traits for one image, pinned by digest."""
    resources = image.resources
    values: dict[str, Any] = {
        "image": image.reference,
        "cpu_limit": cpu_cores(resources.cpu),
        "cpu_guarantee": cpu_cores(resources.cpu),
        "mem_limit": byte_specification(resources.memory),
        "mem_guarantee": byte_specification(resources.memory),
    }
    if image.gpu:
        # A GPU image with no count in the catalog still needs one device to start.
        values["extra_resource_limits"] = {"nvidia.com/gpu": str(resources.gpus or 1)}
    if image.type in DEFAULT_URLS:
        values["default_url"] = DEFAULT_URLS[image.type]
    return values
