"""Kubernetes manifests for one notebook: what a site deploys, one file per image.

The Pod is the one the Notebook CRD's `spec.template.spec` (seed 003, Kubeflow's notebook
controller) and KubeSpawner's pod manifest describe: the image by digest, the notebook port,
a PersistentVolumeClaim as the home, an in-memory `emptyDir` at /dev/shm, requests equal to
limits (guaranteed QoS). An image with the kubeflow profile is served under NB_PREFIX with
no token; any other takes its token from a Secret the site creates (`<name>-token`, key
`token`), so no credential is written here. `podman kube play` runs the Pod on one machine.
"""

from __future__ import annotations

from typing import Any

from imagekit.exports.common import ExportFile, container_resources, dns_label, yaml_text
from imagekit.published.catalog import PublishedCatalog, PublishedImage

NAMESPACE = "default"
HOME_SIZE = "10Gi"
# The notebook's user and group in every imagekit image (jovyan, users): the volume's files
# are made the group's by the kubelet (fsGroup), as in docker-stacks' images.
USER, GROUP = 1000, 100


def export(catalog: PublishedCatalog) -> list[ExportFile]:
    return [ExportFile(f"kube-{image.name}.yaml", manifests(image))
            for image in catalog.images]


def manifests(image: PublishedImage, namespace: str = NAMESPACE) -> str:
    name = dns_label(image.name)
    # An image made for Kubeflow (its profile) gets Kubeflow's contract; any other is run
    # the way JupyterHub or a user runs it, with a token.
    contract = "kubeflow" if "kubeflow" in image.profiles else "token"
    how = (f"NB_PREFIX=/notebook/{namespace}/{name}, no token" if contract == "kubeflow"
           else f"token from the Secret {name}-token (key: token), which the site creates")
    generated, _, documents = yaml_text(claim(name, namespace),
                                        pod(image, name, namespace, contract)).partition("\n")
    return (f"{generated}\n# {image.name}: {image.reference}\n"
            f"# Served on port {image.port}; {how}.\n{documents}")


def _labels(name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": name, "app.kubernetes.io/managed-by": "imagekit"}


def claim(name: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": f"{name}-home", "namespace": namespace, "labels": _labels(name)},
        "spec": {"accessModes": ["ReadWriteOnce"],
                 "resources": {"requests": {"storage": HOME_SIZE}}},
    }


def pod(image: PublishedImage, name: str, namespace: str, contract: str) -> dict[str, Any]:
    if contract == "kubeflow":
        env: list[dict[str, Any]] = [{"name": "NB_PREFIX",
                                      "value": f"/notebook/{namespace}/{name}"}]
        probe_path = f"/notebook/{namespace}/{name}/api/status"
    else:
        env = [{"name": "JUPYTER_TOKEN", "valueFrom": {"secretKeyRef": {
            "name": f"{name}-token", "key": "token"}}}]
        probe_path = "/api"  # answers without the token
    resources = container_resources(image.resources)
    container: dict[str, Any] = {
        # The Notebook CRD wants container[0] named as the notebook.
        "name": name,
        "image": image.reference,
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": "notebook-port", "containerPort": image.port, "protocol": "TCP"}],
        "env": env,
        "resources": {"requests": dict(resources), "limits": dict(resources)},
        "volumeMounts": [{"name": "home", "mountPath": "/home/jovyan"},
                         {"name": "dshm", "mountPath": "/dev/shm"}],
    }
    if image.type == "jupyter":
        container["readinessProbe"] = {"httpGet": {"path": probe_path, "port": image.port},
                                       "periodSeconds": 2}
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": _labels(name)},
        "spec": {
            "securityContext": {"runAsUser": USER, "runAsGroup": GROUP, "fsGroup": GROUP},
            "containers": [container],
            "volumes": [
                {"name": "home", "persistentVolumeClaim": {"claimName": f"{name}-home"}},
                {"name": "dshm", "emptyDir": {"medium": "Memory"}},
            ],
        },
    }
