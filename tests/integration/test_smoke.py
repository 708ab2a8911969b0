"""Given built images, when I run `imagekit test`, then every consumer's contract holds."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from imagekit.checks.kernel import execute
from tests.integration import suite
from tests.integration.conftest import failed, imagekit

pytestmark = pytest.mark.integration

JUPYTER_CONTRACT = (
    "docker run: token auth",
    "docker run: generated token printed",
    "kubeflow: served under NB_PREFIX without token",
    "kubeflow: kernel runs under the prefix",
    "jupyterhub: jupyterhub-singleuser reaches for the hub",
    "random uid 12345 with an empty volume as home",
    "read-only root, uid not in passwd, home not writable",
    "HEALTHCHECK turns healthy",
    "python imports",
    "kernels registered",
)


@pytest.mark.parametrize("image", ["base", "scipy"])
def test_every_check_passes(image: str, build: Callable[..., Any],
                            smoke: Callable[[str], dict[str, Any]]) -> None:
    build("scipy")
    report = smoke(image)
    assert report["exit"] == 0, failed(report)
    names = {r["name"] for r in report["results"]}
    assert set(JUPYTER_CONTRACT) <= names
    assert report["latencies"][image]["first_200_s"] < 30


def test_scipy_kernels_compute(build: Callable[..., Any],
                               smoke: Callable[[str], dict[str, Any]]) -> None:
    build("scipy")
    report = smoke("scipy")
    kernels = [r for r in report["results"] if r["name"].startswith("kernel python3")]
    assert len(kernels) >= 3 and all(r["ok"] for r in kernels)
    assert any("'45'" in r["evidence"] for r in kernels)


def test_a_failing_check_fails_the_run_and_leaves_no_container(
    build: Callable[..., Any], client: Any, tmp_path: Path
) -> None:
    build("scipy")
    suite.copy_project(tmp_path)
    stack = tmp_path / "stacks/scipy.yaml"
    stack.write_text(stack.read_text().replace('expect: "45"', 'expect: "46"'))
    proc = subprocess.Popen([sys.executable, "-m", "imagekit", "test", "scipy", "--catalog",
                             str(tmp_path / "catalog.yaml")], cwd=tmp_path, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, _ = proc.communicate(timeout=900)
    assert proc.returncode == 1
    assert "FAIL scipy: kernel python3: import numpy" in out
    assert "printed '45'" in out  # the evidence: what was seen instead
    # Nothing of this run's is left (its containers carry its session: its pid first);
    # what another process on the engine holds at the moment is its own.
    left = client.containers.list(all=True, filters={"label": "io.imagekit.check"},
                                  ignore_removed=True)
    assert [c.name for c in left
            if c.labels.get("io.imagekit.temporary", "").startswith(f"{proc.pid}-")] == []


def test_all_tests_what_is_built_and_reports_the_rest(build: Callable[..., Any],
                                                     tmp_path: Path) -> None:
    """rstudio cannot be built here: `test --all` must not stop at it; base, unchanged, is
    not tested twice."""
    build("base")
    catalog = suite.copy_project(tmp_path)
    text = catalog.read_text()
    head, _, _ = text.partition("images:\n")
    catalog.write_text(head + "images:\n  - stack: base\n  - stack: rstudio\n"
                       "defaults: {jupyter: base, rstudio: rstudio}\n")
    result = imagekit("test", "--all", "--json", catalog=catalog, check=False)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert report["not_built"] == ["rstudio"]
    assert {r["image"] for r in report["results"]} == {"base"}
    assert "rstudio: not built" in result.stderr
    # Asked again, nothing has changed: base's image ID passed the same checks, none runs.
    again = imagekit("test", "--all", "--json", catalog=catalog, check=False)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    reused = json.loads(again.stdout)
    assert reused["results"] == [] and reused["not_built"] == ["rstudio"]
    assert [r["image"] for r in reused["passed_before"]] == ["base"]
    assert "PASSED BEFORE base: this image ID passed its" in again.stderr


def test_compose_deployment_serves_notebooks(build: Callable[..., Any], docker_ip: str,
                                             docker_services: Any) -> None:
    build("scipy")
    port = docker_services.port_for("notebook", 8888)
    url = f"http://{docker_ip}:{port}"
    docker_services.wait_until_responsive(
        check=lambda: _ok(f"{url}/api/status?token=compose-token"), timeout=90, pause=0.5)
    assert "45" in execute(url, "compose-token", "python3",
                           "import numpy; print(numpy.arange(10).sum())")
    prefix = "/notebook/team/alice"
    kf = f"http://{docker_ip}:{docker_services.port_for('kubeflow', 8888)}"
    docker_services.wait_until_responsive(check=lambda: _ok(f"{kf}{prefix}/api/status"),
                                          timeout=90, pause=0.5)
    assert "42" in execute(kf + prefix, "", "python3", "print(6 * 7)")


def _ok(url: str) -> bool:
    try:
        return requests.get(url, timeout=3).status_code == 200
    except requests.RequestException:
        return False
