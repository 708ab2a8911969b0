"""Kubeflow Notebooks v1: the jupyter web app's `spawner_ui_config.yaml`.

Shape and key names follow kubeflow/notebooks (branch notebooks-v1)
`components/crud-web-apps/jupyter/manifests/base/configs/spawner_ui_config.yaml`, and what
its backend (`backend/apps/common/form.py`, `utils.py`) and Angular form read from it.
The file is mounted as the app's ConfigMap; the backend reads `spawnerFormDefaults` only.

The form labels an option with `imageDisplayName` (frontend form-image.component.ts), which
splits the reference at ':' and keeps the first two parts: a bare digest reference,
`host:5055/ns/scipy@sha256:HEX`, shows as `host:5055/ns/scipy@sha256`, and `hideTag` would
leave every option showing `host`. Options are therefore `repository:TAG@sha256:HEX`, with
the image's most specific published tag: the pod still runs the digest (beside a digest a
tag is not used to pull), and the form shows `host:5055/ns/scipy`, or `ns/scipy:TAG@sha256`
for a registry without a port (its host hidden by `hideRegistry`).
"""

from __future__ import annotations

from typing import Any

from imagekit.exports.common import (
    GPU_RESOURCE,
    ExportFile,
    by_type,
    cpu_decimal,
    default_image,
    memory_gibibytes,
    yaml_text,
)
from imagekit.published.catalog import NotebookType, PublishedCatalog, PublishedImage

# The form's three image groups: Jupyter-like (served under NB_PREFIX), VSCode-like
# (`imageGroupOne`, Istio rewrites the prefix to "/"), RStudio-like (`imageGroupTwo`, also
# gets the X-RStudio-Root-Path header).
GROUPS: dict[NotebookType, str] = {
    "jupyter": "image",
    "code-server": "imageGroupOne",
    "rstudio": "imageGroupTwo",
}
# The backend multiplies requests by these to set limits; it float()s them, and without
# one it crashes (`float(None)`), so they are always written. Upstream's default.
LIMIT_FACTOR = "1.2"


def export(catalog: PublishedCatalog) -> list[ExportFile]:
    return [ExportFile("kubeflow.yaml", yaml_text(spawner_ui_config(catalog)))]


def spawner_ui_config(catalog: PublishedCatalog) -> dict[str, Any]:
    images = catalog.for_consumer("kubeflow")
    groups = by_type(images)
    sizing = default_image(catalog, groups["jupyter"]) or (images[0] if images else None)
    cpu = cpu_decimal(sizing.resources.cpu) if sizing else "0.5"
    memory = memory_gibibytes(sizing.resources.memory) if sizing else "1Gi"
    defaults: dict[str, Any] = {
        "allowCustomImage": True,
        "hideRegistry": True,
        # The form splits references at ':' to show "name:tag"; with a registry port,
        # hiding the "tag" would leave every option showing the registry's host.
        "hideTag": False,
        "imagePullPolicy": {"readOnly": False, "value": "IfNotPresent"},
    }
    for kind, key in GROUPS.items():
        defaults[key] = image_group(catalog, groups[kind])
    defaults.update({
        # The backend float()s `cpu` and strips "Gi" from `memory` before float(), so both
        # are written as plain decimals ("0.5", "2Gi"), never "500m" or "2048Mi".
        "cpu": {"readOnly": False, "value": cpu, "limitFactor": LIMIT_FACTOR},
        "memory": {"readOnly": False, "value": memory, "limitFactor": LIMIT_FACTOR},
        "gpus": {"readOnly": False, "value": gpu_value(images)},
        # The Angular form reads every one of these without a guard: all must be present.
        "workspaceVolume": {"readOnly": False, "value": {
            "mount": "/home/jovyan",
            "newPvc": {
                "metadata": {"name": "{notebook-name}-workspace"},
                "spec": {"resources": {"requests": {"storage": "5Gi"}},
                         "accessModes": ["ReadWriteOnce"]},
            },
        }},
        "dataVolumes": {"readOnly": False, "value": []},
        "affinityConfig": {"readOnly": False, "value": "", "options": []},
        "tolerationGroup": {"readOnly": False, "value": "", "options": []},
        "shm": {"readOnly": False, "value": True},
        "configurations": {"readOnly": False, "value": []},
        "environment": {"readOnly": False, "value": {}},
    })
    return {"spawnerFormDefaults": defaults}


def image_group(catalog: PublishedCatalog, images: list[PublishedImage]) -> dict[str, Any]:
    """`{value, options}`; an empty group keeps the keys (the form disables it on "")."""
    default = default_image(catalog, images)
    return {
        "value": form_reference(default) if default else "",
        "options": [form_reference(image) for image in images],
    }


def form_reference(image: PublishedImage) -> str:
    """`repository:TAG@sha256:...`: the digest the pod runs, with the image's last published
    tag other than `latest` (or `latest`) for the form to show (see the module's note)."""
    repository, _, digest = image.reference.partition("@")
    named = [tag for tag in image.tags if tag != "latest"] or image.tags
    return f"{repository}:{named[-1]}@{digest}" if named else image.reference


def gpu_value(images: list[PublishedImage]) -> dict[str, Any]:
    # Offer the NVIDIA vendor only when some image can use it; `vendor: ""` leaves the
    # choice to the user and `num: "none"` means no GPU unless asked for.
    vendors = ([{"limitsKey": GPU_RESOURCE, "uiName": "NVIDIA"}]
               if any(image.gpu for image in images) else [])
    return {"vendor": "", "vendors": vendors, "num": "none"}
