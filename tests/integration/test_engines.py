"""The engines users run today: imagekit's core path on each, beside the host's own.

Docker 28.5 with buildx, on dockerd's own image store and on containerd's (the default of
Docker 29 for new installs), and Podman 5.8 (rootful), from Debian sid's packages in a root
of their own (tests/integration/engines.py), each started empty with its own data root and
socket (and dockerd its own bridge). On each: `doctor`, `imagekit base` (the site's Debian
base pulled from the module's registry), `lock` against a package index that the builds get
as a secret, `build` of base and scipy cold and warm, `test`, both SIF methods (native, and
the real Apptainer's), `publish` signed with a cosign key into the module's registry, and
`verify` with it. The host's own engines (Docker 20.10, Podman 4.3) run the same path in the
rest of the suite (test_publish.py, test_release.py, test_podman.py). `make test-engines`
runs this module alone.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import pytest

from imagekit.engine.client import Engine
from imagekit.published.catalog import PublishedCatalog, read
from tests.integration import apptainer as ap
from tests.integration import background, engines, suite
from tests.integration.conftest import ROOT, imagekit
from tests.integration.registry import LocalRegistry, fresh_registry
from tests.integration.runners import checkout, mirror_base

pytestmark = [pytest.mark.integration, pytest.mark.engines]

# name (short: a bridge's name has 15 bytes at most), engine, containerd's image store
ALL = (("d28", "docker", False), ("d28c", "docker", True), ("p58", "podman", False))
# `make test-engines ENGINES=d28c,p58` runs only those.
CHOSEN = [n for n in os.environ.get("IMAGEKIT_TEST_ENGINES", "").split(",") if n]
MATRIX = tuple(m for m in ALL if not CHOSEN or m[0] in CHOSEN)
KIND = {name: kind for name, kind, _ in MATRIX}
CONTAINERD = {name: containerd for name, _, containerd in MATRIX}
PACKAGE = {"docker": "docker.io", "podman": "podman"}
TIMES: dict[str, dict[str, float]] = {}
PYPI = "https://pypi.org/simple"  # handed to the builds as a secret, as a site's index is


@dataclass
class Run:
    """One engine's pass through the core path: what each step said, or where it failed."""

    name: str
    catalog: Path
    outcomes: dict[str, Any] = field(default_factory=dict)
    error: BaseException | None = None
    engine_said: str = ""  # the end of the engine's own log, when a step failed


@dataclass
class Matrix:
    registry: LocalRegistry
    runs: dict[str, Run]
    stop: Any


def _catalog(folder: Path, name: str, base: str) -> Path:
    """A site's checkout for this engine: its namespace, the site's base from the module's
    registry, and a package index the builds get as a secret."""
    catalog = checkout(folder, f"engines-{name}", base)
    mirrors = folder / "profiles" / "mirrors.yaml"
    mirrors.write_text(mirrors.read_text() + f"  pip_index_url: {PYPI}\n")
    return catalog


def _core_path(run: Run, env: dict[str, str], keys: dict[str, str], tools: Path,
               cosign_pub: Path) -> None:
    o, times = run.outcomes, TIMES.setdefault(run.name, {})
    # cosign and the real Apptainer (sid's), then the engine's own client.
    env = {**env, **keys, "PATH": f"{tools}:{env.get('PATH', os.environ['PATH'])}"}

    def step(label: str, *args: str, extra: dict[str, str] | None = None) -> Any:
        started = time.monotonic()
        result = imagekit(*args, catalog=run.catalog, env={**env, **(extra or {})},
                          timeout=3600)
        times[label] = round(time.monotonic() - started, 1)
        return json.loads(result.stdout) if "--json" in args else result.stdout

    o["doctor"] = step("doctor", "doctor", "--json")
    o["base"] = step("base (pulled)", "base")
    # The site's package index (a secret for the builds) is one of the lock's inputs.
    o["lock"] = step("lock base scipy", "lock", "base", "scipy")
    o["build-cold"] = step("build base scipy, cold", "build", "base", "scipy", "--format",
                           "docker", "--json")
    # Again from the engine's cache (new images: a build's time is in its labels), then
    # scipy's SIF of what will be tested and published.
    o["build-warm"] = step("build base scipy --force, warm (+ scipy's SIF, native)", "build",
                           "base", "scipy", "--force", "--json", "--sif-method", "native")
    o["test"] = step("test base scipy", "test", "base", "scipy", "--json")
    if KIND[run.name] == "docker":
        started = time.monotonic()
        o["execs"] = _short_execs(env["DOCKER_HOST"], o["build-warm"]["images"][0]["image_id"])
        times[f"{EXECS} short execs"] = round(time.monotonic() - started, 1)
    # Apptainer reads a Docker image from the engine's socket, which its root gets bound in
    # (Podman's is handed over as an archive).
    socket = env.get("DOCKER_HOST", "").removeprefix("unix://")
    o["sif-apptainer"] = step("SIF of base by apptainer", "build", "base", "--format", "sif",
                              "--sif-method", "apptainer", "--json",
                              extra={"SID_ROOT_BINDS": socket} if socket else None)
    if CONTAINERD[run.name]:
        # zstd layers are made from an engine's own store: refused here, before any push.
        zstd = run.catalog.with_name("catalog-zstd.yaml")
        zstd.write_text(run.catalog.read_text() + "layers: {compression: zstd}\n")
        refused = imagekit("publish", "base", "scipy", catalog=zstd, env=env, check=False)
        o["zstd-refused"] = {"exit": refused.returncode, "said": refused.stderr}
    o["publish"] = step("publish base scipy", "publish", "base", "scipy", "--json")
    o["verify"] = {name: step(f"verify {name}", "verify", name, "--key", str(cosign_pub),
                              "--json") for name in ("base", "scipy")}


EXECS = 40


def _short_execs(url: str, image_id: str) -> list[tuple[int, str]]:
    """What imagekit's engine hands back for short commands in a container of the image,
    asked while the suite keeps the machine busy: the SDK's exec_run lost the output of one
    in five here and still said exit 0 (docker/docker-py#3332)."""
    engine = Engine(client=docker.DockerClient(base_url=url, timeout=900))
    container = engine.start(image_id, ["-c", "sleep 3600"], entrypoint=["/bin/bash"],
                             network="none")
    try:
        return [container.exec("test -s /etc/imagekit/ca-bundle.crt && echo present; "
                               "echo said >&2; exit 3") for _ in range(EXECS)]
    finally:
        container.remove()
        engine.client.close()


def beside(folder: Path) -> Matrix:
    """Each engine of the matrix, one after the other, beside the rest of the suite
    (tests/integration/background.py): their processes are this setup's own."""
    root = engines.ensure_root()
    sid = ap.ensure_root()
    address = suite.free_address()
    registries = fresh_registry(folder / "registry", address)
    registry = next(registries)
    try:
        base = mirror_base(address)
        # cosign (sid's) and the real Apptainer, which reads from the engine's socket.
        tools = ap.host_tools(sid, folder / "tools")
        shutil.copy(ROOT / "tests/integration/bin/sid-root-apptainer", tools / "apptainer")
        (tools / "sid-root.env").write_text(f"SID_ROOT={sid}\nSLURM_DIR={folder}\n")
        keys, cosign_pub, _ = ap.site_keys(folder, tools)
    except BaseException:
        next(registries, None)
        raise
    runs: dict[str, Run] = {}
    for n, (name, kind, containerd) in enumerate(MATRIX):
        run = runs[name] = Run(name, _catalog(folder / name, name, base))
        engine = engines.SidEngine(name, kind, 40 + n, containerd, root)
        try:
            with engines.running(engine, folder / "host"):
                try:
                    _core_path(run, engine.env, keys, tools, cosign_pub)
                except Exception:
                    run.engine_said = engine.log_tail()
                    raise
        except Exception as exc:  # this engine's tests fail with it; the next one runs
            run.error = exc
    return Matrix(registry, runs, lambda: next(registries, None))


@pytest.fixture(scope="module")
def matrix() -> Iterator[Matrix]:
    with background.taken(__name__) as found:
        yield found


def _run(matrix: Matrix, name: str) -> Run:
    run = matrix.runs[name]
    if run.error is not None:
        # What the failing step said, whole: a chained traceback would crowd it out.
        pytest.fail(f"{name}: {run.error}\n{name}'s engine said, last:\n{run.engine_said}",
                    pytrace=False)
    return run


def _identity(run: Run) -> dict[str, str]:
    """The engine doctor found for this run (the host's Docker answers beside sid's Podman)."""
    [found] = [e for e in run.outcomes["doctor"]["engines"] if e["engine"] == KIND[run.name]]
    return dict(found)


@pytest.mark.parametrize("name", [m[0] for m in MATRIX])
def test_the_engine_is_what_doctor_and_build_say(matrix: Matrix, name: str) -> None:
    run = _run(matrix, name)
    containerd = {m[0]: m[2] for m in MATRIX}[name]
    engine = _identity(run)
    # sid's package, e.g. 28.5.2+dfsg3-1 for dockerd 28.5.2
    package = engines.version_of(engines.ROOT, PACKAGE[KIND[name]])
    assert package.startswith(engine["version"] + "+") or package.startswith(
        engine["version"] + "-"), (package, engine)
    if KIND[name] == "docker":
        assert engine["builder"].startswith("BuildKit via `") and " buildx build`" in \
            engine["builder"]
        assert engine["image_store"].startswith("containerd" if containerd else "classic")
    else:
        assert engine["builder"].startswith("buildah via `")
        assert engine["image_store"].startswith("containers/storage")
    assert run.outcomes["build-cold"]["engine"] == run.outcomes["build-warm"]["engine"] == engine


@pytest.mark.parametrize("name", [m[0] for m in MATRIX])
def test_base_builds_tests_and_converts_both_ways(matrix: Matrix, name: str) -> None:
    run = _run(matrix, name)
    cold = {o["image"]: o["status"] for o in run.outcomes["build-cold"]["images"]}
    assert cold == {"base": "built", "scipy": "built"}
    warm = run.outcomes["build-warm"]["images"]
    assert [o["status"] for o in warm] == ["built", "built"]
    # What was tested is the warm build's.
    tested = {r["image"]: r["image_id"] for r in
              (json.loads(p.read_text()) for p in
               (run.catalog.parent / "dist" / "tested").glob("*.json"))}
    assert tested == {o["image"]: o["image_id"] for o in warm}
    checks = run.outcomes["test"]
    assert checks["results"] and all(r["ok"] for r in checks["results"]), checks
    assert {r["image"] for r in checks["results"]} == {"base", "scipy"}
    [native] = run.outcomes["build-warm"]["sif"]
    [apptainer] = run.outcomes["sif-apptainer"]["sif"]
    assert (native["image"], native["method"]) == ("scipy", "native")
    assert (apptainer["image"], apptainer["method"]) == ("base", "apptainer")


@pytest.mark.parametrize("name", [m[0] for m in MATRIX])
def test_what_was_tested_is_what_was_pushed(matrix: Matrix, name: str) -> None:
    run = _run(matrix, name)
    dist = run.catalog.parent / "dist"
    published: PublishedCatalog = read(dist / "catalog.json")
    tested = {r["image"]: r["image_id"] for r in
              (json.loads(p.read_text()) for p in (dist / "tested").glob("*.json"))}
    engine = _identity(run)
    for image in published.images:
        # The image the checks passed on, by the ID this engine gives it...
        assert image.image_id == tested[image.name], image.name
        assert image.tested.status == "passed"
        assert image.built_by == (f"{engine['engine']} {engine['version']}, "
                                  f"{engine['builder']}, {engine['image_store']}")
        # ...is what the registry holds under every tag the catalog names.
        for tag in image.tags:
            digest, _ = matrix.registry.manifest(f"engines-{name}/{image.name}", tag)
            assert digest == image.digest, (image.name, tag)
    for image, said in run.outcomes["verify"].items():
        assert all(f["ok"] for f in said["findings"]), (image, said)


@pytest.mark.parametrize("name", [m[0] for m in MATRIX if m[2]])
def test_zstd_layers_are_refused_on_the_containerd_store_before_any_push(
        matrix: Matrix, name: str) -> None:
    """The catalog asks for zstd layers, which imagekit makes from an engine's own store:
    on containerd's, publish says so (exit 2) and the gzip publication after it is the
    registry's first (test_what_was_tested_is_what_was_pushed checks every tag)."""
    said = _run(matrix, name).outcomes["zstd-refused"]
    assert said["exit"] == 2, said
    assert "catalog-zstd.yaml: layers.compression: zstd layers are pushed from the engine's " \
           "own image store" in said["said"]
    assert "Traceback" not in said["said"]


@pytest.mark.parametrize("name", [m[0] for m in MATRIX if m[1] == "docker"])
def test_a_short_commands_output_comes_back_whole(matrix: Matrix, name: str) -> None:
    """Every exec's stdout and stderr and its own exit status, none empty (the checks'
    commands are such execs; Podman's go through its CLI)."""
    run = _run(matrix, name)
    said = run.outcomes["execs"]
    assert len(said) == EXECS
    assert [(code, sorted(out.split())) for code, out in said] == \
        [(3, ["present", "said"])] * EXECS
