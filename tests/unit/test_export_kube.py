"""Given a published catalog, `imagekit export kube IMAGE` writes a PersistentVolumeClaim and
a Pod that Kubernetes' own schemas accept, whose spec both Notebook CRDs (Kubeflow's, every
served version, and oneblock's; ../shared/consumers/) accept as `spec.template.spec`.
tests/integration/test_podman.py runs them with `podman kube play`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml
from kubernetes_validate.utils import latest_version  # type: ignore[import-untyped]

from imagekit.exports import kube
from imagekit.published.catalog import PublishedCatalog, read
from tests import consumers
from tests.hub import SAMPLE


@pytest.fixture
def published() -> PublishedCatalog:
    return read(SAMPLE)


def documents(published: PublishedCatalog, image: str) -> list[dict[str, Any]]:
    files = {f.name: f.text for f in kube.export(published)}
    return list(yaml.safe_load_all(files[f"kube-{image}.yaml"]))


def test_every_published_image_gets_manifests_kubernetes_accepts(
        published: PublishedCatalog) -> None:
    version = latest_version()
    for image in published.images:
        for document in documents(published, image.name):
            kubernetes_validate.validate(document, version, strict=True)


def test_the_pod_is_the_notebook_template(published: PublishedCatalog) -> None:
    image = next(i for i in published.images if i.name == "scipy-kubeflow")
    claim, pod = documents(published, image.name)
    [container] = pod["spec"]["containers"]
    assert container["name"] == pod["metadata"]["name"] == "scipy-kubeflow"
    assert container["image"] == image.reference and "@sha256:" in container["image"]
    assert container["ports"][0]["containerPort"] == image.port
    assert container["resources"]["requests"] == container["resources"]["limits"]
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert volumes[mounts["/home/jovyan"]]["persistentVolumeClaim"]["claimName"] == \
        claim["metadata"]["name"]
    assert volumes[mounts["/dev/shm"]]["emptyDir"] == {"medium": "Memory"}
    assert {"name": "NB_PREFIX", "value": "/notebook/default/scipy-kubeflow"} in \
        container["env"]


KUBEFLOW, ONEBLOCK = "kubeflow.org_notebooks.yaml", "ml.oneblock.ai_notebooks.yaml"
NOTEBOOK_CRDS = [(KUBEFLOW, "v1"), (KUBEFLOW, "v1beta1"), (KUBEFLOW, "v1alpha1"), (ONEBLOCK, "v1")]


@pytest.mark.parametrize(("crd", "version"), NOTEBOOK_CRDS)
def test_the_pod_spec_is_a_notebook_template_its_crds_accept(published: PublishedCatalog,
                                                             crd: str, version: str) -> None:
    group, kind, versions = consumers.crd_names(crd)
    assert kind == "Notebook" and version in versions
    for image in published.images:
        _, pod = documents(published, image.name)
        notebook = {"apiVersion": f"{group}/{version}", "kind": kind,
                    "metadata": {"name": pod["metadata"]["name"]},
                    "spec": {"template": {"spec": pod["spec"]}}}
        assert consumers.crd_errors(notebook, crd, version) == [], image.name
    # The check can fail: a field a PodSpec does not have, and a port given as a string.
    broken: dict[str, Any] = {
        "apiVersion": f"{group}/{version}", "kind": kind, "metadata": {"name": "x"},
        "spec": {"template": {"spec": {**pod["spec"], "container": []}}}}
    broken["spec"]["template"]["spec"]["containers"] = [
        {**pod["spec"]["containers"][0], "ports": [{"containerPort": "8888"}]}]
    errors = consumers.crd_errors(broken, crd, version)
    assert any("'container'" in e for e in errors), errors
    assert any("containerPort" in e for e in errors), errors


def test_other_images_take_their_token_from_a_secret_and_carry_none(
        published: PublishedCatalog) -> None:
    _, pod = documents(published, "scipy")
    [container] = pod["spec"]["containers"]
    [env] = container["env"]
    assert env == {"name": "JUPYTER_TOKEN", "valueFrom": {"secretKeyRef": {
        "name": "scipy-token", "key": "token"}}}


def test_the_cli_names_the_image_or_says_what_is_wrong(cli: Callable[..., tuple[int, str]]
                                                       ) -> None:
    code, out = cli("export", "kube", "scipy", "--published", str(SAMPLE))
    assert code == 0 and "kind: Pod" in out and "claimName: scipy-home" in out
    code, out = cli("export", "kube", "--published", str(SAMPLE))
    assert code == 2 and "IMAGE" in out
    code, out = cli("export", "kube", "scipi", "--published", str(SAMPLE))
    assert code == 2 and "'scipi' is not published" in out and "scipy" in out
    code, out = cli("export", "kubespawner", "scipy", "--published", str(SAMPLE))
    assert code == 2 and "only kube takes an image" in out
