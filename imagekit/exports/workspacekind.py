"""Kubeflow Notebooks 2.0: one `WorkspaceKind` (kubeflow.org/v1beta1, cluster-scoped) per type.

Fields follow kubeflow/notebooks (branch notebooks-v2)
`workspaces/controller/api/v1beta1/workspacekind_types.go` and its samples under
`workspaces/controller/manifests/kustomize/samples/`. The rule that shapes this module is
the validating webhook's (`internal/webhook/workspacekind_webhook.go`): an imageConfig
or podConfig value that a Workspace uses may not have its `spec` changed nor be removed.
So value ids name an exact digest, and every digest an image was published under before
stays listed, hidden, redirecting to its successor. Only `spawner` and `redirect` of an
existing value ever change between publications (the webhook allows that).
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any

from imagekit.exports.common import (
    GPU_RESOURCE,
    ExportFile,
    by_type,
    container_resources,
    cpu_decimal,
    default_image,
    dns_label,
    memory_gibibytes,
    yaml_text,
)
from imagekit.published.catalog import NotebookType, PublishedCatalog, PublishedImage, Resources

API_VERSION = "kubeflow.org/v1beta1"
DIGEST_CHARS = 12
# "<prefix>-<version>" tags computed in the image (python-3.11.2, code-server-4.9.1); the
# non-greedy prefix stops at the first "-" followed by a digit, so dates never match.
_VERSION_TAG = re.compile(r"([a-z][a-z0-9-]*?)-([0-9][A-Za-z0-9.+_-]*)")
MAX_LABELS = 32  # OptionSpawnerLabel list, MaxItems


@dataclass(frozen=True)
class Kind:
    name: str
    display_name: str
    description: str
    port_id: str  # PortId: ^[a-z0-9]([a-z0-9_-]*[a-z0-9])?$, part of the connect URL
    port_name: str
    # Jupyter serves under NB_PREFIX itself; code-server and RStudio serve at "/" and need
    # the prefix stripped by the proxy (the v1 UI's imageGroupOne / imageGroupTwo).
    remove_path_prefix: bool
    request_headers: dict[str, Any]
    icon: str
    logo: str


def _prefix(port_id: str) -> str:
    # A Go template the controller renders per Workspace (`httpPathPrefix` is its function).
    return "{{ httpPathPrefix " + f'"{port_id}"' + " }}"


KINDS: dict[NotebookType, Kind] = {
    "jupyter": Kind(
        "imagekit-jupyterlab", "JupyterLab", "A Workspace which runs JupyterLab in a Pod",
        "jupyterlab", "JupyterLab", False, {},
        "https://jupyter.org/assets/favicons/apple-touch-icon-152x152.png",
        "https://upload.wikimedia.org/wikipedia/commons/3/38/Jupyter_logo.svg"),
    "code-server": Kind(
        "imagekit-codeserver", "VS Code (code-server)",
        "A Workspace which runs VS Code (code-server) in a Pod",
        "vscode", "VS Code", True, {},
        "https://upload.wikimedia.org/wikipedia/commons/9/9a/Visual_Studio_Code_1.35_icon.svg",
        "https://upload.wikimedia.org/wikipedia/commons/9/9a/Visual_Studio_Code_1.35_icon.svg"),
    "rstudio": Kind(
        "imagekit-rstudio", "RStudio", "A Workspace which runs RStudio in a Pod",
        "rstudio", "RStudio", True,
        # RStudio builds its URLs from this header, not from the request path.
        {"set": {"X-RStudio-Root-Path": _prefix("rstudio")}},
        "https://upload.wikimedia.org/wikipedia/commons/1/1b/R_logo.svg",
        "https://upload.wikimedia.org/wikipedia/commons/1/1b/R_logo.svg"),
}


def export(catalog: PublishedCatalog) -> list[ExportFile]:
    return [ExportFile("workspacekind.yaml", yaml_text(*workspace_kinds(catalog)))]


def workspace_kinds(catalog: PublishedCatalog) -> list[dict[str, Any]]:
    groups = by_type(catalog.for_consumer("workspacekind"))
    return [workspace_kind(catalog, kind, images)
            for kind, images in groups.items() if images]


def workspace_kind(catalog: PublishedCatalog, notebook_type: NotebookType,
                   images: list[PublishedImage]) -> dict[str, Any]:
    kind = KINDS[notebook_type]
    default = default_image(catalog, images) or images[0]
    return {
        "apiVersion": API_VERSION,
        "kind": "WorkspaceKind",
        "metadata": {"name": kind.name,
                     "labels": {"app.kubernetes.io/managed-by": "imagekit"}},
        "spec": {
            "spawner": {
                "displayName": kind.display_name,
                "description": kind.description,
                "hidden": False,
                "deprecated": False,
                "icon": {"url": kind.icon},
                "logo": {"url": kind.logo},
            },
            "podTemplate": pod_template(kind, images, default),
        },
    }


def pod_template(kind: Kind, images: list[PublishedImage],
                 default: PublishedImage) -> dict[str, Any]:
    return {
        "podMetadata": {"labels": {}, "annotations": {}},
        # The controller creates one ServiceAccount per Workspace; `clusterRoles` become
        # RoleBindings in its namespace. (`serviceAccount.name` was removed from the CRD in
        # kubeflow/notebooks#1307.) kubeflow-edit is what v1's default-editor was bound to.
        "serviceAccount": {"clusterRoles": [{"name": "kubeflow-edit"}]},
        "volumeMounts": {"home": "/home/jovyan"},
        "ports": [{
            "id": kind.port_id,
            "defaultDisplayName": kind.port_name,
            "protocol": "HTTP",
            "httpProxy": {"removePathPrefix": kind.remove_path_prefix,
                          "requestHeaders": copy.deepcopy(kind.request_headers)},
        }],
        # Every imagekit image reads NB_PREFIX: Jupyter serves under it, and code-server
        # takes its presence as "the platform authenticates" (no password prompt).
        "extraEnv": [{"name": "NB_PREFIX", "value": _prefix(kind.port_id)}],
        "extraVolumeMounts": [{"name": "dshm", "mountPath": "/dev/shm"}],
        "extraVolumes": [{"name": "dshm", "emptyDir": {"medium": "Memory"}}],
        # jovyan is uid 1000 in group users (100) in every image.
        "securityContext": {"fsGroup": 100, "seccompProfile": {"type": "RuntimeDefault"}},
        "containerSecurityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "runAsNonRoot": True,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "options": {
            "imageConfig": {
                "spawner": {"default": value_id(default.name, default.digest)},
                "values": [value for image in images for value in image_values(kind, image)],
            },
            "podConfig": pod_config(images, default),
        },
    }


def value_id(name: str, digest: str) -> str:
    """A stable, DNS-label-safe id naming one digest of one image: `scipy-e3a80a5b4227`."""
    hex_digits = digest.split(":", 1)[-1][:DIGEST_CHARS]
    return f"{dns_label(name, 63 - DIGEST_CHARS - 1)}-{hex_digits}"


def image_values(kind: Kind, image: PublishedImage) -> list[dict[str, Any]]:
    """The current value, then one hidden value per older digest, each redirecting forward."""
    current = image_value(kind, image, image.digest, image.reference, image.tags)
    values = [current]
    successor = current["id"]
    seen = {current["id"]}
    for previous in image.history:  # newest first
        value = image_value(kind, image, previous.digest, previous.reference, previous.tags)
        if value["id"] in seen:  # republished under a digest already listed
            continue
        seen.add(value["id"])
        value["spawner"]["hidden"] = True
        value["redirect"] = {"to": successor, "message": {
            "level": "Info",
            "text": f"{image.name} was republished as {successor}; "
                    "restart the Workspace to use it.",
        }}
        values.append(_reordered(value))
        successor = value["id"]
    return values


def image_value(kind: Kind, image: PublishedImage, digest: str, reference: str,
                tags: list[str]) -> dict[str, Any]:
    # Built only from what the catalog keeps for old digests too (name, digest, reference,
    # tags), so an old value comes out the same as when it was current.
    spawner: dict[str, Any] = {
        "displayName": f"{image.name} ({digest.split(':', 1)[-1][:DIGEST_CHARS]})"}
    if len(image.description) >= 2:
        spawner["description"] = image.description[:1024]
    labels = version_labels(tags)
    if image.gpu:
        labels.append({"key": "gpu", "value": GPU_RESOURCE})
    if labels:
        spawner["labels"] = labels[:MAX_LABELS]
    spawner["hidden"] = False
    return {
        "id": value_id(image.name, digest),
        "spawner": spawner,
        "spec": {
            "image": reference,
            "imagePullPolicy": "IfNotPresent",
            "ports": [{"id": kind.port_id, "port": image.port}],
        },
    }


def _reordered(value: dict[str, Any]) -> dict[str, Any]:
    # id, spawner, redirect, spec: the order of the Go type and the samples.
    return {"id": value["id"], "spawner": value["spawner"], "redirect": value["redirect"],
            "spec": value["spec"]}


def version_labels(tags: list[str]) -> list[dict[str, str]]:
    labels: dict[str, str] = {}
    for tag in tags:
        match = _VERSION_TAG.fullmatch(tag)
        if match:
            key = match.group(1).replace("-", "_") + "_version"
            labels.setdefault(key[:64], match.group(2)[:64])
    return [{"key": key, "value": value} for key, value in labels.items()]


def pod_config(images: list[PublishedImage], default: PublishedImage) -> dict[str, Any]:
    sizes: dict[str, Resources] = {}
    for image in images:
        sizes.setdefault(size_id(image.resources), image.resources)
    ordered = sorted(sizes.items(), key=lambda item: _size_order(item[1]))
    return {
        "spawner": {"default": size_id(default.resources)},
        "values": [pod_config_value(size, resources) for size, resources in ordered],
    }


def size_id(resources: Resources) -> str:
    """`cpu-1-memory-2gi[-gpu-1]`: derived from the amounts, so a size keeps its id."""
    text = f"cpu-{cpu_decimal(resources.cpu)}-memory-{memory_gibibytes(resources.memory)}"
    if resources.gpus:
        text += f"-gpu-{resources.gpus}"
    return dns_label(text, 256)


def _size_order(resources: Resources) -> tuple[int, float, float]:
    return (resources.gpus, float(cpu_decimal(resources.cpu)),
            float(memory_gibibytes(resources.memory)[:-2]))


def pod_config_value(size: str, resources: Resources) -> dict[str, Any]:
    cpu, memory = cpu_decimal(resources.cpu), memory_gibibytes(resources.memory)
    display = f"{cpu} CPU, {memory} RAM" + (f", {resources.gpus} GPU" if resources.gpus else "")
    labels = [{"key": "cpu", "value": resources.cpu}, {"key": "memory", "value": resources.memory}]
    amounts = container_resources(resources)
    spec: dict[str, Any] = {"resources": {"requests": dict(amounts), "limits": dict(amounts)}}
    if resources.gpus:
        labels.append({"key": "gpu", "value": str(resources.gpus)})
        # GPU nodes are commonly tainted; without this the pod would never schedule there.
        spec["tolerations"] = [{"key": GPU_RESOURCE, "operator": "Exists",
                                "effect": "NoSchedule"}]
    return {
        "id": size,
        "spawner": {"displayName": display,
                    "description": f"Pod with {display} (requests = limits)",
                    "labels": labels, "hidden": False},
        "spec": spec,
    }
