"""Integration fixtures: the real engine, the real CLI, images built once per session."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from tests.integration import suite

ROOT = suite.ROOT
# Commands that read no catalog (and take no --catalog).
_NO_CATALOG = frozenset({"inspect", "version"})
_SUITE_BUILDS = threading.RLock()


def imagekit(*args: str, catalog: Path | None = None, check: bool = True,
             timeout: float = 3000, env: dict[str, str] | None = None
             ) -> subprocess.CompletedProcess[str]:
    """Run the real CLI as a user would: in the catalog's folder, on the suite's own project
    (tests/integration/suite.py) unless a test names another catalog."""
    catalog = catalog or suite.CATALOG
    argv = [sys.executable, "-m", "imagekit", *args]
    if not args or args[0] not in _NO_CATALOG:
        argv += ["--catalog", str(catalog)]
    # Builds of the suite's own project take turns: two builds of one image at once (from
    # two threads of the session) would race for its tags.
    turn = _SUITE_BUILDS if args[:1] == ("build",) and catalog == suite.CATALOG \
        else contextlib.nullcontext()
    with turn:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                                cwd=catalog.parent,
                                env={**os.environ, "COLUMNS": "200", **(env or {})})
    if check and result.returncode != 0:
        raise AssertionError(f"imagekit {' '.join(args)} exited {result.returncode}\n"
                             f"stdout:\n{result.stdout[-4000:]}\nstderr:\n{result.stderr[-4000:]}")
    return result


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of stacks/ and profiles/ beside a catalog of the suite's (its registry, its
    namespace) that a test may change; recipes/ is rendered where a test needs it."""
    suite.copy_project(tmp_path, parts=("stacks", "profiles", "schemas"))
    return tmp_path


@pytest.fixture(scope="session")
def client() -> Iterator[Any]:
    """The engine's Docker API: Docker's, or Podman's when the suite runs under Podman
    (IMAGEKIT_ENGINE=podman, `make test-podman`), which every CLI call then uses too."""
    if os.environ.get("IMAGEKIT_ENGINE") == "podman":
        from imagekit.engine.podman import PodmanEngine

        podman = PodmanEngine()
        yield podman.client
        podman.close()
        return
    try:
        engine = docker.from_env(timeout=900)
        engine.ping()
    except docker.errors.DockerException as exc:
        # Never pass silently: without an engine these tests fail, they do not skip.
        pytest.fail(f"no Docker engine ({exc}): run the tests with `make test`, which starts "
                    "dockerd, or deselect them with -m 'not integration'")
    yield engine


_BASE = threading.Lock()
_BASE_MADE: list[str] = []


def main_base() -> str:
    """The catalog's base in the suite's engine, made once: by the session, or by a setup
    beside it that needs it first (tests/integration/background.py); never twice at once."""
    with _BASE:
        if not _BASE_MADE:
            imagekit("base")
            _BASE_MADE.append("imagekit/debian:bookworm")
    return _BASE_MADE[0]


def load_base(load: list[str], env: dict[str, str]) -> None:
    """The suite's one base, saved from its engine and loaded into another with `load`
    (`docker load`, `podman load`), as a site loads its base: debootstrap runs once per run."""
    save = subprocess.Popen(["docker", "save", main_base()], stdout=subprocess.PIPE)
    loaded = subprocess.run(load, stdin=save.stdout, capture_output=True, text=True,
                            timeout=600, env={**os.environ, **env}, check=False)
    assert save.stdout is not None
    save.stdout.close()
    assert save.wait() == 0 and loaded.returncode == 0, loaded.stderr[-2000:]


@pytest.fixture(scope="session")
def base_image(client: Any) -> str:
    return main_base()


_BUILT: dict[tuple[str, ...], list[dict[str, Any]]] = {}


def build_images(*names: str) -> list[dict[str, Any]]:
    """Build images of the suite's project through the CLI, once per session (from the
    tests or from a setup beside them); return the JSON outcomes."""
    main_base()
    with _SUITE_BUILDS:
        if names not in _BUILT:
            # Docker images only: SIF conversion has its own tests (test_sif.py).
            result = imagekit("build", *names, "--format", "docker", "--json")
            _BUILT[names] = json.loads(result.stdout)["images"]
        return _BUILT[names]


_TESTED: dict[str, dict[str, Any]] = {}
_TESTING: dict[str, threading.Lock] = {}
_TABLE = threading.Lock()


def smoke_test(name: str) -> dict[str, Any]:
    """`imagekit test IMAGE --json`, once per image per session (images apart at once)."""
    with _TABLE:
        lock = _TESTING.setdefault(name, threading.Lock())
    with lock:
        if name not in _TESTED:
            result = imagekit("test", name, "--json", check=False)
            report = json.loads(result.stdout)
            report["exit"] = result.returncode
            report["stderr"] = result.stderr
            _TESTED[name] = report
        return _TESTED[name]


@pytest.fixture(scope="session")
def build(base_image: str) -> Callable[..., list[dict[str, Any]]]:
    return build_images


@pytest.fixture(scope="session")
def smoke() -> Callable[[str], dict[str, Any]]:
    return smoke_test


@pytest.fixture(scope="session")
def docker_compose_command() -> str:
    # Debian ships docker-compose v1; there is no `docker compose` plugin here.
    return "docker-compose"


@pytest.fixture(scope="session")
def docker_setup() -> list[str]:
    # docker-compose v1 has no `up --wait`; readiness is waited for by the tests themselves.
    return ["up -d"]


@pytest.fixture(scope="session")
def docker_compose_file() -> str:
    return str(ROOT / "tests" / "integration" / "docker-compose.yml")


@pytest.fixture(scope="session")
def docker_compose_project_name() -> str:
    return "imagekit-tests"


@pytest.fixture(scope="session")
def sid_root() -> Path:
    """The debootstrapped Debian sid root whose real Apptainer the SIF tests run."""
    from tests.integration import apptainer as ap
    try:
        return ap.ensure_root()
    except ap.Unavailable as exc:
        pytest.fail(f"no real Apptainer here: {exc}")


def failed(report: dict[str, Any]) -> list[str]:
    return [f"{r['name']}: {r['evidence']}" for r in report["results"] if not r["ok"]]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The modules whose setup runs beside the suite go last (in their order), so that it
    has every other module's time to run in; no test depends on the order of modules."""
    def beside(item: pytest.Item) -> bool:
        return callable(getattr(getattr(item, "module", None), "beside", None))

    items.sort(key=beside)  # stable: the order within each part stays


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start the setups that run beside the suite (tests/integration/background.py) of the
    modules this session runs, and register those that run in place."""
    if session.config.option.collectonly:
        return
    from tests.integration import apptainer, background

    if any(item.get_closest_marker("integration") for item in session.items):
        # The real Apptainer's sid root (debootstrap and apt, minutes on a bare machine),
        # which most modules use: made beside the first tests, which need none of it.
        background.start("apptainer sid root", lambda folder: apptainer.ensure_root())
    for item in session.items:
        module = getattr(item, "module", None)
        if module is None or module.__name__ in background.JOBS:
            continue
        if callable(work := getattr(module, "beside", None)):
            background.start(module.__name__, work)
        elif callable(work := getattr(module, "prepare", None)):
            background.defer(module.__name__, work)
    background.after_beside()


def pytest_sessionfinish(session: pytest.Session) -> None:
    from tests.integration import background

    background.finish_all()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    from tests.integration import background, podman
    from tests.integration.runners import TIMES, summary

    if background.JOBS:
        terminalreporter.section("Module setups, beside the suite or in place (s)")
        background.summary(terminalreporter.write_line)

    if TIMES:
        terminalreporter.section("CI runners (s)")
        summary(terminalreporter.write_line)
    from tests.integration import test_arm64, test_engines, test_workflow

    matrix = {f"{engine}: {step}": seconds for engine, steps in test_engines.TIMES.items()
              for step, seconds in steps.items()}
    for title, times in (("Podman (s)", podman.TIMES),
                         ("arm64 under QEMU beside amd64 (s)", test_arm64.TIMES),
                         ("The GitHub workflow run by act, per job (s)", test_workflow.TIMES),
                         ("The engines of sid, the core path on each (s)", matrix)):
        if times:
            terminalreporter.section(title)
            for step, seconds in times.items():
                terminalreporter.write_line(f"{step}: {seconds}")
