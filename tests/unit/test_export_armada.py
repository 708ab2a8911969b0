"""Given a published catalog, the Armada exports start the images as valid Kubernetes pods.

Formats: seed 000 (armada-jupyter config: version, submissions[] of name, image, timeout,
resources) and armadaproject/armada `pkg/client/domain/types.go` JobSubmitFile with
`pkg/api/submit.proto` JobSubmitRequestItem (priority, namespace, labels, podSpec, services
{type NodePort|Headless, ports}); the server's `validateResources` refuses requests that
differ from limits. armadaproject/armada-jupyter `submissions.py` also needs
`waitForJobsRunning` and reads `services[0].ports[0]`.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml
from kubernetes_validate.utils import latest_version  # type: ignore[import-untyped]

from imagekit.exports import armada
from imagekit.publish.catalog import PublishedCatalog, read
from tests.hub import SAMPLE

DIGEST_REFERENCE = re.compile(r"[^@\s]+@sha256:[0-9a-f]{64}")


@pytest.fixture
def published() -> PublishedCatalog:
    return read(SAMPLE)


def exported(catalog: PublishedCatalog) -> tuple[dict[str, Any], dict[str, Any]]:
    files = armada.export(catalog)
    assert [f.name for f in files] == ["armada.yaml", "armada-submit.yaml"]
    config, submit = (yaml.safe_load(f.text) for f in files)
    return config, submit


def as_pod(pod_spec: dict[str, Any], name: str = "notebook") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": pod_spec}


def test_deploy_config_as_in_seed_000(published: PublishedCatalog) -> None:
    config, _ = exported(published)
    assert config["version"] == "0.1"
    images = published.for_consumer("armada")
    assert [s["name"] for s in config["submissions"]] == [i.name for i in images]
    for submission, image in zip(config["submissions"], images, strict=True):
        assert set(submission) == {"name", "image", "timeout", "resources"}
        assert submission["image"] == image.reference
        assert DIGEST_REFERENCE.fullmatch(submission["image"])
        assert re.fullmatch(r"\d+h", submission["timeout"])
        assert submission["resources"]["cpu"] == image.resources.cpu
        assert submission["resources"]["memory"] == image.resources.memory


def test_submit_file_shape(published: PublishedCatalog) -> None:
    _, submit = exported(published)
    assert submit["queue"] == "notebooks"
    assert submit["jobSetId"] == "imagekit-notebooks"
    assert submit["waitForJobsRunning"] is True
    images = published.for_consumer("armada")
    assert len(submit["jobs"]) == len(images)
    for job, image in zip(submit["jobs"], images, strict=True):
        assert isinstance(job["priority"], int)
        assert job["namespace"]
        assert "podSpecs" not in job
        (container,) = job["podSpec"]["containers"]
        assert container["name"] == "notebook"
        assert container["image"] == image.reference
        assert container["securityContext"]["runAsUser"] == 1000
        assert container["ports"][0]["containerPort"] == image.port
        assert job["services"] == [{"type": "NodePort", "ports": [image.port]}]


def test_requests_equal_limits_gpu_included(published: PublishedCatalog) -> None:
    _, submit = exported(published)
    for job, image in zip(submit["jobs"], published.for_consumer("armada"), strict=True):
        resources = job["podSpec"]["containers"][0]["resources"]
        assert resources["requests"] == resources["limits"]
        assert ("nvidia.com/gpu" in resources["limits"]) is image.gpu
        if image.gpu:
            assert resources["limits"]["nvidia.com/gpu"] == str(image.resources.gpus)


def test_every_pod_spec_is_a_valid_kubernetes_pod(published: PublishedCatalog) -> None:
    version = latest_version()
    _, submit = exported(published)
    for index, job in enumerate(submit["jobs"]):
        kubernetes_validate.validate(as_pod(job["podSpec"], f"job-{index}"), version,
                                     strict=True)


def test_the_validator_bites(published: PublishedCatalog) -> None:
    _, submit = exported(published)
    broken = copy.deepcopy(submit["jobs"][0]["podSpec"])
    broken["containers"][0]["ports"][0]["containerPort"] = "8888"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(as_pod(broken), latest_version(), strict=True)
