"""The large stacks: built and smoke-tested on the real engine like base and scipy.

Marked `heavy` so that `pytest -m "not heavy"` stays quick; `make test` and CI run them.
pytorch-cuda has its own file (test_pytorch_cuda.py); rstudio (a .deb from outside the
reachable registries) is not built here: see the README.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from tests.integration import suite
from tests.integration.conftest import build_images, failed, smoke_test

pytestmark = [pytest.mark.integration, pytest.mark.heavy]


@pytest.fixture(scope="module", autouse=True)
def _built() -> None:
    """The two large stacks that nothing earlier builds, built and tested in place: their
    builds are the suite engine's work, which would only contend with the other tests' if
    run beside them. r and vscode come from the end-to-end tests' publication; the tests
    below take all four from the session."""
    for image in ("pytorch", "pyspark"):
        build_images(image)
        smoke_test(image)


@pytest.mark.parametrize("image", ["pytorch", "pyspark", "r", "vscode"])
def test_stack_builds_and_passes_its_checks(image: str, build: Callable[..., Any],
                                            smoke: Callable[[str], dict[str, Any]]) -> None:
    outcomes = build(image)
    assert all(o["status"] in ("built", "cached") for o in outcomes), outcomes
    report = smoke(image)
    assert report["exit"] == 0, failed(report)


def test_r_kernel_runs_tidyverse(build: Callable[..., Any],
                                 smoke: Callable[[str], dict[str, Any]]) -> None:
    build("r")
    results = {r["name"]: r for r in smoke("r")["results"]}
    ir = [r for name, r in results.items() if name.startswith("kernel ir")]
    assert ir and all(r["ok"] for r in ir) and "11" in ir[0]["evidence"]


def test_vscode_at_root_and_behind_jupyter(build: Callable[..., Any],
                                           smoke: Callable[[str], dict[str, Any]]) -> None:
    outcomes = build("vscode")
    # Its tagger reads the version, not the log line code-server's first run prints first.
    tags = [t.rpartition(":")[2] for o in outcomes if o["image"] == "vscode" for t in o["tags"]]
    versions = [t for t in tags if t.startswith("code-server-")]
    assert len(versions) == 1 and re.fullmatch(r"code-server-[0-9]+(\.[0-9]+)+", versions[0]), \
        tags
    names = {r["name"] for r in smoke("vscode")["results"] if r["ok"]}
    assert "kubeflow: code-server at / on 8888" in names
    assert "jupyter-server-proxy serves /vscode/" in names
    assert "docker run: editor asks for credentials" in names


def test_pytorch_comes_from_the_wheelhouse(build: Callable[..., Any], client: Any) -> None:
    build("pytorch")
    out = client.containers.run(suite.ref("pytorch"),
                                ["-c", "import torch; print(torch.__version__)"],
                                entrypoint=["python3"], remove=True).decode()
    assert out.strip() == "2.13.0+cpu"
