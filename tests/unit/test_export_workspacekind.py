"""Given a published catalog, the WorkspaceKinds follow Kubeflow Notebooks 2.0's API, and a
second publication never rewrites or removes a value the first one offered.

Checked against kubeflow/notebooks, branch notebooks-v2:
  workspaces/controller/api/v1beta1/workspacekind_types.go   required fields, lengths, the
      PortId pattern, enums (protocol HTTP, redirect level Info|Warning|Danger)
  workspaces/controller/internal/webhook/workspacekind_webhook.go   defaults must exist,
      redirect targets must exist without cycles, a value's port ids must be podTemplate
      ports, and a used value's `spec` may not change nor the value disappear
  workspaces/controller/manifests/kustomize/samples/*_v1beta1_workspacekind.yaml
"""

from __future__ import annotations

import re
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml
from kubernetes_validate.utils import latest_version  # type: ignore[import-untyped]

from imagekit.exports import workspacekind
from imagekit.published.catalog import Previous, PublishedCatalog, read
from tests import consumers
from tests.hub import SAMPLE

DNS_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
PORT_ID = re.compile(r"[a-z0-9]([a-z0-9_-]*[a-z0-9])?")
TEMPLATE = re.compile(r'\{\{ httpPathPrefix "([^"]+)" \}\}')
NEW_SCIPY = "sha256:" + "ab" * 32


@pytest.fixture
def published() -> PublishedCatalog:
    return read(SAMPLE)


def kinds_of(catalog: PublishedCatalog) -> list[dict[str, Any]]:
    files = workspacekind.export(catalog)
    assert [f.name for f in files] == ["workspacekind.yaml"]
    return [d for d in yaml.safe_load_all(files[0].text) if d is not None]


def values_by_id(kind: dict[str, Any]) -> dict[str, dict[str, Any]]:
    values = kind["spec"]["podTemplate"]["options"]["imageConfig"]["values"]
    by_id = {v["id"]: v for v in values}
    assert len(by_id) == len(values), "imageConfig ids must be unique"
    return by_id


def republished(catalog: PublishedCatalog, name: str, digest: str) -> PublishedCatalog:
    """The next publication: `name` has a new digest, the old one is pushed onto history."""
    images = []
    for image in catalog.images:
        if image.name == name:
            previous = Previous(digest=image.digest, reference=image.reference, tags=image.tags)
            image = image.model_copy(update={
                "digest": digest,
                "reference": f"{image.repository}@{digest}",
                "history": [previous, *image.history],
            })
        images.append(image)
    return catalog.model_copy(update={"images": images})


def test_one_kind_per_published_type(published: PublishedCatalog) -> None:
    kinds = kinds_of(published)
    assert [k["metadata"]["name"] for k in kinds] == ["imagekit-jupyterlab",
                                                      "imagekit-codeserver"]
    for kind in kinds:
        assert kind["apiVersion"] == "kubeflow.org/v1beta1"
        assert kind["kind"] == "WorkspaceKind"
        assert "namespace" not in kind["metadata"]  # cluster-scoped


CRD = "kubeflow.org_workspacekinds.yaml"  # kubeflow/notebooks notebooks-v2, ../shared/consumers


def test_every_kind_is_one_the_crd_accepts_cel_rules_included(published: PublishedCatalog
                                                               ) -> None:
    group, kind_name, versions = consumers.crd_names(CRD)
    for catalog in (published, republished(published, "scipy", NEW_SCIPY)):
        for kind in kinds_of(catalog):
            api_group, _, version = kind["apiVersion"].partition("/")
            assert (api_group, kind["kind"]) == (group, kind_name) and version in versions
            assert consumers.crd_errors(kind, CRD, version) == [], kind["metadata"]["name"]


def test_the_crd_check_bites_on_schema_and_cel(published: PublishedCatalog) -> None:
    kind = kinds_of(published)[0]
    version = kind["apiVersion"].partition("/")[2]
    # A field the CRD lacks; and a logo with both a URL and a ConfigMap, which its CEL rule
    # (exactly one of them) refuses though the schema alone accepts it.
    spawner = kind["spec"]["spawner"]
    logo = {"url": "https://example.org/logo.svg",
            "configMap": {"name": "logos", "key": "logo.svg"}}
    broken = {**kind, "spec": {**kind["spec"], "spawner": {**spawner, "logo": logo,
                                                             "colour": "red"}}}
    errors = consumers.crd_errors(broken, CRD, version)
    assert any("'colour'" in e for e in errors), errors
    assert any(e.startswith("spec.spawner.logo:") for e in errors), errors


def test_structure_follows_the_go_types(published: PublishedCatalog) -> None:
    for kind in kinds_of(published):
        spawner = kind["spec"]["spawner"]
        assert 2 <= len(spawner["displayName"]) <= 128
        assert 2 <= len(spawner["description"]) <= 4096
        assert spawner["hidden"] is False and spawner["deprecated"] is False
        for asset in ("icon", "logo"):  # required, exactly one of url / configMap
            assert list(spawner[asset]) == ["url"]
            assert spawner[asset]["url"].startswith("https://")

        template = kind["spec"]["podTemplate"]
        assert template["volumeMounts"]["home"] == "/home/jovyan"
        assert template["serviceAccount"] == {"clusterRoles": [{"name": "kubeflow-edit"}]}
        ports = {p["id"]: p for p in template["ports"]}
        assert len(ports) == len(template["ports"]) >= 1
        for port_id, port in ports.items():
            assert PORT_ID.fullmatch(port_id) and len(port_id) <= 32
            assert port["protocol"] == "HTTP"
            assert 2 <= len(port["defaultDisplayName"]) <= 64
            assert isinstance(port["httpProxy"]["removePathPrefix"], bool)
        for env in template["extraEnv"]:
            assert set(TEMPLATE.findall(env["value"])) <= set(ports)

        image_config = template["options"]["imageConfig"]
        values = values_by_id(kind)
        assert image_config["spawner"]["default"] in values
        for value_id, value in values.items():
            assert DNS_LABEL.fullmatch(value_id), value_id
            assert 2 <= len(value["spawner"]["displayName"]) <= 128
            assert len(value["spawner"].get("labels", [])) <= 32
            for label in value["spawner"].get("labels", []):
                assert 2 <= len(label["key"]) <= 64 and 1 <= len(label["value"]) <= 64
            spec = value["spec"]
            assert re.fullmatch(r"[^@\s]+@sha256:[0-9a-f]{64}", spec["image"])
            assert spec["imagePullPolicy"] in ("Always", "IfNotPresent", "Never")
            assert spec["ports"] and all(p["id"] in ports for p in spec["ports"])
            if "redirect" in value:
                assert value["redirect"]["to"] in values
                assert value["redirect"]["message"]["level"] in ("Info", "Warning", "Danger")

        pod_config = template["options"]["podConfig"]
        sizes = {v["id"]: v for v in pod_config["values"]}
        assert len(sizes) == len(pod_config["values"]) >= 1
        assert pod_config["spawner"]["default"] in sizes


def test_jupyter_keeps_its_prefix_and_code_server_has_it_stripped(
        published: PublishedCatalog) -> None:
    jupyter, codeserver = kinds_of(published)
    jupyter_port = jupyter["spec"]["podTemplate"]["ports"][0]
    assert jupyter_port["id"] == "jupyterlab"
    assert jupyter_port["httpProxy"]["removePathPrefix"] is False
    assert jupyter["spec"]["podTemplate"]["extraEnv"] == [
        {"name": "NB_PREFIX", "value": '{{ httpPathPrefix "jupyterlab" }}'}]
    assert codeserver["spec"]["podTemplate"]["ports"][0]["httpProxy"]["removePathPrefix"]


def test_history_redirects_forward_without_cycles(published: PublishedCatalog) -> None:
    values = values_by_id(kinds_of(published)[0])
    scipy = published.image("scipy")
    old = values[workspacekind.value_id("scipy", scipy.history[0].digest)]
    assert old["spawner"]["hidden"] is True
    assert old["spec"]["image"] == scipy.history[0].reference
    assert old["redirect"]["to"] == workspacekind.value_id("scipy", scipy.digest)
    assert old["redirect"]["message"]["level"] == "Info"
    for start in values:
        seen, current = set(), start
        while "redirect" in values[current]:
            assert current not in seen, f"redirect cycle through {current}"
            seen.add(current)
            current = values[current]["redirect"]["to"]
        assert values[current]["spawner"]["hidden"] is False


def test_publishing_twice_rewrites_and_removes_nothing(published: PublishedCatalog) -> None:
    second = republished(published, "scipy", NEW_SCIPY)
    first_kinds, second_kinds = kinds_of(published), kinds_of(second)
    assert [k["metadata"]["name"] for k in first_kinds] == [
        k["metadata"]["name"] for k in second_kinds]
    for before_kind, after_kind in zip(first_kinds, second_kinds, strict=True):
        before, after = values_by_id(before_kind), values_by_id(after_kind)
        assert set(before) <= set(after), "a value disappeared"
        for value_id, value in before.items():
            kept = after[value_id]
            assert kept["spec"] == value["spec"], f"{value_id}: spec rewritten"
            strip = {"hidden", "redirect"}
            assert ({k: v for k, v in kept["spawner"].items() if k not in strip}
                    == {k: v for k, v in value["spawner"].items() if k not in strip})
            assert kept["id"] == value["id"]
            if "redirect" in value:  # an existing redirect keeps pointing where it did
                assert kept["redirect"] == value["redirect"]

    jupyter = values_by_id(second_kinds[0])
    new_id = workspacekind.value_id("scipy", NEW_SCIPY)
    old_id = workspacekind.value_id("scipy", published.image("scipy").digest)
    assert second_kinds[0]["spec"]["podTemplate"]["options"]["imageConfig"]["spawner"][
        "default"] == new_id
    assert jupyter[new_id]["spawner"]["hidden"] is False
    assert jupyter[old_id]["spawner"]["hidden"] is True
    assert jupyter[old_id]["redirect"]["to"] == new_id
    oldest = workspacekind.value_id("scipy", published.image("scipy").history[0].digest)
    assert jupyter[oldest]["redirect"]["to"] == old_id


def test_pod_pieces_make_a_valid_pod(published: PublishedCatalog) -> None:
    """Assemble what the controller would (image value + podConfig + podTemplate) and let
    Kubernetes' own schema judge it: ports are ints, resources are quantities, and so on."""
    version = latest_version()
    for kind in kinds_of(published):
        template = kind["spec"]["podTemplate"]
        for value in values_by_id(kind).values():
            for size in template["options"]["podConfig"]["values"]:
                for port in value["spec"]["ports"]:
                    assert isinstance(port["port"], int) and 1 <= port["port"] <= 65535
                container = {
                    "name": "main",
                    "image": value["spec"]["image"],
                    "imagePullPolicy": value["spec"]["imagePullPolicy"],
                    "ports": [{"containerPort": p["port"]} for p in value["spec"]["ports"]],
                    "env": [{"name": e["name"], "value": TEMPLATE.sub("/prefix/", e["value"])}
                            for e in template["extraEnv"]],
                    "volumeMounts": [{"name": "home", "mountPath": "/home/jovyan"},
                                     *template["extraVolumeMounts"]],
                    "securityContext": template["containerSecurityContext"],
                    "resources": size["spec"]["resources"],
                }
                pod = {
                    "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "ws"},
                    "spec": {
                        "securityContext": template["securityContext"],
                        "containers": [container],
                        "volumes": [{"name": "home", "emptyDir": {}},
                                    *template["extraVolumes"]],
                        "tolerations": size["spec"].get("tolerations", []),
                    },
                }
                kubernetes_validate.validate(pod, version, strict=True)


def test_pod_configs_are_guaranteed_sizes(published: PublishedCatalog) -> None:
    jupyter = kinds_of(published)[0]["spec"]["podTemplate"]["options"]["podConfig"]
    assert jupyter["spawner"]["default"] == "cpu-1-memory-2gi"
    gpu = next(v for v in jupyter["values"] if v["id"] == "cpu-4-memory-16gi-gpu-1")
    resources = gpu["spec"]["resources"]
    assert resources["requests"] == resources["limits"]
    assert resources["limits"]["nvidia.com/gpu"] == "1"


def test_plain_deterministic_yaml(published: PublishedCatalog) -> None:
    text = workspacekind.export(published)[0].text
    assert text.startswith("# Generated by `imagekit publish`")
    assert "&id" not in text  # shared objects would come out as YAML anchors
    assert text == workspacekind.export(read(SAMPLE))[0].text
