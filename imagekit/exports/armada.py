"""Armada: armada-jupyter's config and an armadactl submit file.

`armada.yaml` is read by armada-jupyter (armadaproject/armada-jupyter, the program that
implements seed 000's design: `armada_jupyter/submissions.py` `convert_to_submission`):
`queue`, `jobSetId`, `waitForJobsRunning` and `jobs`, each job a `podSpec` (one container,
with a named port), `priority`, `namespace`, `labels` and `services`, whose first port
armada-jupyter builds the notebook's URL from. The seed's own example (`version`,
`submissions[]`) is read by no program. `armada-submit.yaml` is what `armadactl submit`
reads (armadaproject/armada `pkg/client/domain/types.go` JobSubmitFile: `queue`,
`jobSetId`, `jobs` of `pkg/api/submit.proto` JobSubmitRequestItem, in their JSON names).
One job per image in each: keep the ones you want to start.
"""

from __future__ import annotations

from typing import Any

from imagekit.exports.common import (
    GPU_RESOURCE,
    ExportFile,
    container_resources,
    dns_label,
    yaml_text,
)
from imagekit.published.catalog import PublishedCatalog, PublishedImage

QUEUE = "notebooks"
JOB_SET = "imagekit-notebooks"
NAMESPACE = "default"
PRIORITY = 1
CONTAINER = "notebook"
NB_UID = 1000  # jovyan in every imagekit image


def export(catalog: PublishedCatalog) -> list[ExportFile]:
    images = catalog.for_consumer("armada")
    return [ExportFile("armada.yaml", yaml_text(jupyter_config(images))),
            ExportFile("armada-submit.yaml", yaml_text(submit_file(images)))]


def jupyter_config(images: list[PublishedImage]) -> dict[str, Any]:
    """armada-jupyter's: a submit file, and whether to wait for the jobs to run."""
    return {**submit_file(images), "waitForJobsRunning": True}


def submit_file(images: list[PublishedImage]) -> dict[str, Any]:
    return {"queue": QUEUE, "jobSetId": JOB_SET, "jobs": [job(image) for image in images]}


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
