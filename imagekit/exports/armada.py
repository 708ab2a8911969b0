"""Armada: the armada-jupyter deploy config (seed 000) and an armadactl submit file.

`armada.yaml` is the design's config: `version`, `submissions[]` of `{name, image, timeout,
resources}`. `armada-submit.yaml` is what `armadactl submit` reads (armadaproject/armada
`pkg/client/domain/types.go` JobSubmitFile: `queue`, `jobSetId`, `jobs` of
`pkg/api/submit.proto` JobSubmitRequestItem, in their JSON names). One job per image: keep
the ones you want to start. armadactl decodes leniently (unknown keys are ignored), so the
file also carries the two keys the released armada-jupyter tool requires on top of a submit
file (`version`, `waitForJobsRunning`), and runs unchanged under both.
"""

from __future__ import annotations

from typing import Any

from imagekit.exports import ExportFile
from imagekit.exports.common import GPU_RESOURCE, container_resources, dns_label, yaml_text
from imagekit.publish.catalog import PublishedCatalog, PublishedImage

CONFIG_VERSION = "0.1"
TIMEOUT = "36h"
QUEUE = "notebooks"
JOB_SET = "imagekit-notebooks"
NAMESPACE = "default"
PRIORITY = 1
CONTAINER = "notebook"
NB_UID = 1000  # jovyan in every imagekit image


def export(catalog: PublishedCatalog) -> list[ExportFile]:
    images = catalog.for_consumer("armada")
    return [ExportFile("armada.yaml", yaml_text(deploy_config(images))),
            ExportFile("armada-submit.yaml", yaml_text(submit_file(images)))]


def deploy_config(images: list[PublishedImage]) -> dict[str, Any]:
    return {"version": CONFIG_VERSION,
            "submissions": [submission(image) for image in images]}


def submission(image: PublishedImage) -> dict[str, Any]:
    return {"name": image.name, "image": image.reference, "timeout": TIMEOUT,
            "resources": container_resources(image.resources)}


def submit_file(images: list[PublishedImage]) -> dict[str, Any]:
    return {
        "version": CONFIG_VERSION,
        "queue": QUEUE,
        "jobSetId": JOB_SET,
        "waitForJobsRunning": True,
        "jobs": [job(image) for image in images],
    }


def job(image: PublishedImage) -> dict[str, Any]:
    return {
        "priority": PRIORITY,
        "namespace": NAMESPACE,
        "labels": {"app.kubernetes.io/name": dns_label(image.name),
                   "app.kubernetes.io/managed-by": "imagekit"},
        # `podSpec` (one), not `podSpecs`: armada-jupyter reads only `podSpec`, and the
        # server accepts either as long as there is exactly one.
        "podSpec": pod_spec(image),
        # armada-jupyter builds its URL from the first service's first port.
        "services": [{"type": "NodePort", "ports": [image.port]}],
    }


def pod_spec(image: PublishedImage) -> dict[str, Any]:
    # Armada refuses a container whose requests differ from its limits (and GPUs are only
    # scheduled from limits), so one resource list serves as both.
    resources = container_resources(image.resources)
    spec: dict[str, Any] = {
        # A notebook that exits is done: Armada jobs are not restarted in place.
        "restartPolicy": "Never",
        "containers": [{
            "name": CONTAINER,
            "image": image.reference,
            "imagePullPolicy": "IfNotPresent",
            "securityContext": {"runAsUser": NB_UID},
            "resources": {"requests": dict(resources), "limits": dict(resources)},
            "ports": [{"containerPort": image.port, "name": CONTAINER, "protocol": "TCP"}],
        }],
    }
    if GPU_RESOURCE in resources:
        spec["tolerations"] = [{"key": GPU_RESOURCE, "operator": "Exists",
                                "effect": "NoSchedule"}]
    return spec
