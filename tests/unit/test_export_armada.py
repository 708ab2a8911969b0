"""Given a published catalog, the Armada exports are read by their programs and start the
images as valid Kubernetes pods.

`armada.yaml` goes through armada-jupyter's own code (armadaproject/armada-jupyter at the
commit in ../shared/consumers/, with armada-client 0.2.9 from PyPI): `convert_to_submission`
reads it, `inject_url` and `create_armada_request` build the request it would submit.
`armada-submit.yaml` is armadactl's submit file (armadaproject/armada
`pkg/client/domain/types.go` JobSubmitFile, the keys of its own testdata file); the server's
`validateResources` refuses requests that differ from limits. Every pod spec validates as a
Pod with kubernetes-validate --strict.
"""

from __future__ import annotations

import copy
import importlib
import re
from pathlib import Path
from typing import Any

import grpc
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml
from kubernetes_validate.utils import latest_version  # type: ignore[import-untyped]

from imagekit.exports import armada
from imagekit.published.catalog import PublishedCatalog, read
from tests import consumers
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


def jupyter_submission(tmp_path: Path, config: dict[str, Any]) -> Any:
    path = tmp_path / "armada.yaml"
    path.write_text(yaml.safe_dump(config))
    return consumers.module("armada_jupyter.submissions").convert_to_submission(str(path))


def test_armada_jupyter_reads_the_config_and_builds_each_request(
        published: PublishedCatalog, tmp_path: Path) -> None:
    config, _ = exported(published)
    submission = jupyter_submission(tmp_path, config)
    assert (submission.queue, submission.job_set_id, submission.wait_for_jobs_running) == (
        "notebooks", "imagekit-notebooks", True)
    images = published.for_consumer("armada")
    assert len(submission.jobs) == len(images)
    utils = consumers.module("armada_jupyter.armada_utils")
    armada_client: Any = importlib.import_module("armada_client.client")  # 0.2.9, from PyPI
    client = armada_client.ArmadaClient(grpc.insecure_channel("127.0.0.1:9"))  # never dialled
    for job, image in zip(submission.jobs, images, strict=True):
        job, start, end = utils.inject_url(job)
        assert start == f"http://notebook-{image.port}-armada-" and end.startswith("-0.default.")
        request = utils.create_armada_request(job, client)
        (container,) = request.pod_spec.containers
        assert container.image == image.reference
        assert DIGEST_REFERENCE.fullmatch(container.image)
        assert container.ports[0].containerPort == image.port
        limits = {k: v.string for k, v in container.resources.limits.items()}
        requests = {k: v.string for k, v in container.resources.requests.items()}
        assert limits == requests and limits["cpu"] == image.resources.cpu
        assert limits["memory"] == image.resources.memory
        assert [list(s.ports) for s in request.services] == [[image.port]]
        assert request.namespace == "default" and request.priority == 1
        assert request.labels["app.kubernetes.io/name"] == image.name


def test_armada_jupyter_refuses_the_seeds_example_format(tmp_path: Path) -> None:
    # What armada.yaml used to be (the design document's example): no program reads it.
    seed = {"version": "0.1", "submissions": [{"name": "scipy", "image": "x", "timeout": "1h"}]}
    with pytest.raises(KeyError, match="jobs"):
        jupyter_submission(tmp_path, seed)


def test_submit_file_has_armadactls_keys(published: PublishedCatalog) -> None:
    _, submit = exported(published)
    sample = yaml.safe_load(consumers.path("armada-jobs-ingress.sample.yaml").read_text())
    assert set(submit) == set(sample) == {"queue", "jobSetId", "jobs"}
    images = published.for_consumer("armada")
    assert len(submit["jobs"]) == len(images)
    for job, image in zip(submit["jobs"], images, strict=True):
        assert set(job) <= {"priority", "namespace", "labels", "annotations", "podSpec",
                            "services", "ingress"}
        assert isinstance(job["priority"], int)
        assert "podSpecs" not in job
        (container,) = job["podSpec"]["containers"]
        assert container["name"] == "notebook"
        assert container["image"] == image.reference
        assert container["securityContext"]["runAsUser"] == 1000
        assert container["ports"][0]["containerPort"] == image.port
        assert job["services"] == [{"type": "NodePort", "ports": [image.port]}]
    config, _ = exported(published)
    assert config == {**submit, "waitForJobsRunning": True}


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
