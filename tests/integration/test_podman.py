"""Podman as the engine: rootful (base, scipy and scipy-kubeflow built, tested, converted
to SIF and published), rootless (a small stack on a base the user bootstraps), and the
Kubernetes manifests of `imagekit export kube` run with `podman kube play` — the closest
thing to a Kubernetes node this machine has."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from imagekit.checks.kernel import execute
from tests.integration import apptainer as ap
from tests.integration import background, suite
from tests.integration.conftest import ROOT, imagekit, load_base
from tests.integration.podman import TIMES, Rootless, inspect, podman, rootless_user
from tests.integration.registry import LocalRegistry, fresh_registry

pytestmark = [pytest.mark.integration, pytest.mark.podman]

ENGINE = {"IMAGEKIT_ENGINE": "podman"}
NAMESPACE = "podman"
TEMPORARY = "io.imagekit.temporary"
TINY = """\
description: A small stack for Podman's rootless tests.
extends: base
pip: [six]
post:
  - {post}
checks:
  imports: [six]
"""


def _catalog_text(registry: str = suite.ADDRESS) -> str:
    return (suite.catalog_text(NAMESPACE, registry=registry)
            .replace("  - stack: pyspark\n", "  - stack: pyspark\n  - stack: tiny\n"
                                             "    formats: [docker, sif]\n")
            + suite.QUICK_SIFS)


def _timed(step: str, *args: str, catalog: Path, env: dict[str, str]) -> Any:
    started = time.monotonic()
    result = imagekit(*args, catalog=catalog, env={**ENGINE, **env})
    TIMES[f"podman rootful: {step}"] = round(time.monotonic() - started, 1)
    return json.loads(result.stdout) if "--json" in args else result.stdout + result.stderr


@dataclass
class Rootful:
    registry: LocalRegistry
    catalog: Path
    store: Path
    stop: Callable[[], None]  # the registry
    outcomes: dict[str, Any] = field(default_factory=dict)

    def ref(self, image: str) -> str:
        return suite.ref(image, NAMESPACE, registry=self.registry.address)


def _store_env(root: Path) -> dict[str, str]:
    """What every podman and imagekit reads to use root's Podman with a store and a cache
    of the module's own (imagekit's own `podman system service` too)."""
    conf = root / "storage.conf"
    if not conf.exists():
        conf.write_text(f'[storage]\ndriver = "overlay"\ngraphroot = "{root / "store"}"\n'
                        f'runroot = "{root / "run"}"\n')
    return {"CONTAINERS_STORAGE_CONF": str(conf), "XDG_CACHE_HOME": str(root / "cache")}


def _empty_store(env: dict[str, str]) -> None:
    for argv in (("pod", "rm", "--all", "--force"), ("rm", "--all", "--force"),
                 ("rmi", "--all", "--force"), ("volume", "rm", "--all", "--force")):
        podman(*argv, check=False, env=env)


@contextlib.contextmanager
def private_store(root: Path) -> Iterator[None]:
    """Root's Podman with a store and a cache of the module's own, as on a fresh machine,
    for the module's tests (the environment of every podman and imagekit they run). Emptied
    and removed afterwards: its layers, with buildah's intermediate images, are several GB a
    CI disk needs back."""
    env = _store_env(root)
    try:
        with pytest.MonkeyPatch.context() as patched:
            for key, value in env.items():
                patched.setenv(key, value)
            yield
    finally:
        # Also when the module's setup failed: the store is gigabytes either way.
        _empty_store(env)
        _remove_store(root)


def _remove_store(root: Path) -> None:
    # conmon's exec sessions linger for 300 s and then run `podman ... cleanup` on this store,
    # which would mount it again after it is gone: they end first (their command lines name
    # the store, so no other conmon is touched).
    for proc in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if proc.name.isdigit() and str(root).encode() in (proc / "cmdline").read_bytes():
                os.kill(int(proc.name), signal.SIGKILL)
    # The overlay driver bind-mounts its folder onto itself; that mount goes lazily.
    mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
    for point in sorted((m for m in mounts if m.startswith(f"{root}/")), reverse=True):
        subprocess.run(["umount", "--lazy", point], check=False)
    shutil.rmtree(root, ignore_errors=True)


def _rootful(root: Path) -> Rootful:
    """Root's Podman with an empty store of its own: the base bootstrapped, base, scipy and
    scipy-kubeflow built (scipy's SIF too), tested and published to a registry of its own."""
    root.mkdir(parents=True)
    env = _store_env(root)
    address = suite.free_address()
    catalog = suite.copy_project(root, NAMESPACE, registry=address)
    (root / "stacks/tiny.yaml").write_text(TINY.format(post="echo tiny"))
    catalog.write_text(_catalog_text(address))
    registries = fresh_registry(root / "registry", address)

    def stop() -> None:
        next(registries, None)

    found = Rootful(next(registries), catalog, root, stop)
    o = found.outcomes
    try:
        # The store is empty, as on a fresh machine, but for the base: debootstrap runs once
        # per architecture per run (the suite's engine's), and its result is loaded here as a
        # site would load its base. Bootstrapping itself is tested where it is the subject:
        # debootstrap in test_build, mmdebstrap and Podman's import in the rootless test.
        load_base(["podman", "load"], env)
        o["base"] = _timed("base (loaded)", "base", catalog=catalog, env=env)
        o["build"] = _timed("build base scipy scipy-kubeflow (+ scipy's SIF)", "build", "scipy",
                            "scipy-kubeflow", "--json", catalog=catalog, env=env)
        o["again"] = _timed("build again", "build", "scipy", "--format", "docker", "--json",
                            catalog=catalog, env=env)
        o["test"] = _timed("test", "test", "base", "scipy", "scipy-kubeflow", "--json",
                           catalog=catalog, env=env)
        o["publish"] = _timed("publish", "publish", "base", "scipy", "scipy-kubeflow",
                              "--json", catalog=catalog, env=env)
        # Apptainer cannot read Podman's storage: imagekit hands it a `podman save`
        # archive, and the real apptainer (as root, from the sid root) builds the SIF.
        tools = root / "apptainer-bin"
        tools.mkdir()
        shutil.copy(ROOT / "tests/integration/bin/sid-root-apptainer", tools / "apptainer")
        (tools / "sid-root.env").write_text(f"SID_ROOT={ap.ensure_root()}\n"
                                            f"SLURM_DIR={tools}\n")
        o["apptainer"] = _timed("SIF of base by apptainer", "build", "base", "--format", "sif",
                                "--sif-method", "apptainer", "--json", catalog=catalog,
                                env={**env, "PATH": f"{tools}:{os.environ['PATH']}"})
        return found
    except BaseException:
        found.stop()
        _empty_store(env)
        _remove_store(root)
        raise


def beside(folder: Path) -> background.Parts:
    """Root's Podman and a rootless user's, one after the other, run beside the rest of the
    suite (tests/integration/background.py); the fixtures `rootful` and `rootless` take
    them, and end each at their teardown."""
    parts = background.Parts()
    parts.run("rootful", lambda: _rootful(folder / "rootful"))
    parts.run("rootless", _rootless)
    return parts


@pytest.fixture(scope="module")
def rootful() -> Iterator[Rootful]:
    found: Rootful = background.result(__name__).take("rootful")
    try:
        with private_store(found.store):
            yield found
    finally:
        found.stop()
        background.finish(__name__)


def test_podman_builds_with_its_own_builder_and_converts_to_sif(rootful: Rootful) -> None:
    o = rootful.outcomes
    assert "is present" in o["base"]  # loaded from the suite's one debootstrap
    status = {b["image"]: b["status"] for b in o["build"]["images"]}
    assert status == {"base": "built", "scipy": "built", "scipy-kubeflow": "built"}
    # Unchanged inputs: the cache key on the image's label finds it again.
    assert {b["image"]: b["status"] for b in o["again"]["images"]} == {
        "base": "cached", "scipy": "cached"}
    scipy = inspect(rootful.ref("scipy"))
    # Docker's image format: the HEALTHCHECK survives (OCI's would drop it).
    health = scipy.get("Healthcheck") or {}
    assert health.get("Test", [])[:2] == ["CMD", "imagekit-healthcheck"], health
    assert scipy["Config"]["Labels"]["io.imagekit.tree-key"]
    [sif] = o["build"]["sif"]
    listing = subprocess.run(["siftool", "list", sif["path"]], capture_output=True,
                             text=True, check=True).stdout
    assert "FS (Squashfs/*System/amd64)" in listing


def test_podman_images_pass_the_smoke_and_contract_checks(rootful: Rootful) -> None:
    results = rootful.outcomes["test"]["results"]
    failed = [f"{r['image']}: {r['name']}: {r['evidence']}" for r in results if not r["ok"]]
    assert not failed, failed
    names = {r["name"] for r in results if r["image"] == "scipy"}
    assert {"HEALTHCHECK turns healthy", "random uid 12345 with an empty volume as home",
            "kubeflow: served under NB_PREFIX without token"} <= names
    health = next(r for r in results if r["name"] == "HEALTHCHECK turns healthy")
    assert health["evidence"] == "podman reports healthy"
    # Nothing the checks started stays behind.
    assert podman("ps", "--all", "--quiet", "--filter", f"label={TEMPORARY}").strip() == ""
    assert podman("volume", "ls", "--quiet", "--filter", f"label={TEMPORARY}").strip() == ""


def test_podman_publishes_the_tested_image_by_digest(rootful: Rootful) -> None:
    lines = {line["image"]: line for line in rootful.outcomes["publish"]["images"]}
    for name in ("base", "scipy", "scipy-kubeflow"):
        repository, _, digest = lines[name]["reference"].partition("@")
        found, manifest = rootful.registry.manifest(repository.split("/", 1)[1], digest)
        assert found == digest
        # The registry holds the very image Podman built and tested.
        assert manifest["config"]["digest"] == inspect(rootful.ref(name))["Id"] or \
            manifest["config"]["digest"] == "sha256:" + inspect(rootful.ref(name))["Id"]
        assert "latest" in lines[name]["tags"]


def test_a_failed_podman_build_moves_no_tag(rootful: Rootful) -> None:
    catalog = rootful.catalog
    imagekit("build", "tiny", "--format", "docker", catalog=catalog, env=ENGINE)
    before = inspect(rootful.ref("tiny"))["Id"]
    (catalog.parent / "stacks/tiny.yaml").write_text(TINY.format(post="exit 3"))
    failed = imagekit("build", "tiny", "--format", "docker", catalog=catalog, env=ENGINE,
                      check=False)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    said = failed.stdout + failed.stderr
    assert "build failed at RUN bash /opt/imagekit/build/tiny-post.sh" in said, said[-2000:]
    assert "exit status 3" in said
    assert inspect(rootful.ref("tiny"))["Id"] == before
    # No container behind: neither a check's nor buildah's working container of the build.
    assert podman("ps", "--all", "--quiet", "--filter", f"label={TEMPORARY}").strip() == ""
    assert podman("ps", "--all", "--external", "--quiet").strip() == ""


def test_apptainer_converts_a_podman_image_from_its_saved_archive(rootful: Rootful) -> None:
    """Apptainer cannot read Podman's storage: imagekit handed it a `podman save` archive,
    and the real apptainer 1.4.5 (as root, from the sid root) built the SIF from it (in the
    module's setup beside the suite)."""
    [report] = rootful.outcomes["apptainer"]["sif"]
    assert report["method"] == "apptainer"
    sif = Path(report["path"])
    inspected = json.loads(imagekit("inspect", str(sif), "--json").stdout)
    assert "Bootstrap: docker-archive" in inspected["deffile"]
    listing = subprocess.run(["siftool", "list", str(sif)], capture_output=True, text=True,
                             check=True).stdout
    assert "FS (Squashfs/*System/amd64)" in listing
    owners = _sif_owners(sif, ["usr/bin/bash", "home/jovyan", "opt/venv/bin/jupyter"])
    assert owners == {"usr/bin/bash": "0/0", "home/jovyan": "1000/100",
                      "opt/venv/bin/jupyter": "0/0"}, owners


# --- podman kube play: the Kubernetes contract ------------------------------------------

def _pod_address(pod: str) -> str:
    infra = json.loads(podman("pod", "inspect", pod))
    infra = infra[0] if isinstance(infra, list) else infra
    container = json.loads(podman("inspect", infra["Containers"][-1]["Id"]))[0]
    networks = container["NetworkSettings"]["Networks"]
    return str(next(iter(networks.values()))["IPAddress"])


def _wait(url: str, timeout: float = 120) -> requests.Response:
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            answer = requests.get(url, timeout=5)
            if answer.status_code == 200:
                return answer
            last = f"HTTP {answer.status_code}"
        except requests.RequestException as exc:
            last = type(exc).__name__
        time.sleep(0.5)
    raise AssertionError(f"{url}: {last} after {timeout} s")


@dataclass
class Played:
    documents: list[dict[str, Any]]
    pod_file: Path
    name: str
    address: str


def _play(rootful: Rootful, image: str, tmp_path: Path, token: str = "") -> Iterator[Played]:
    text = imagekit("export", "kube", image, catalog=rootful.catalog).stdout
    documents = list(yaml.safe_load_all(text))
    claim, pod = documents
    name = pod["metadata"]["name"]
    # A PersistentVolumeClaim becomes a Podman volume. Kubernetes gives a new claim empty,
    # while Podman would copy the image's home into it (copy-up): create the claim's volume
    # without copy-up, then play the Pod.
    volume = claim["metadata"]["name"]
    podman("volume", "create", "--opt", "nocopy", volume)
    secret = f"{name}-token"
    if token:
        # Podman 4.3 reads a secretKeyRef from a Podman secret holding {key: base64 value}.
        data = tmp_path / "secret.json"
        data.write_text(json.dumps({"token": base64.b64encode(token.encode()).decode()}))
        podman("secret", "create", secret, str(data))
    pod_file = tmp_path / "pod.yaml"
    pod_file.write_text(yaml.safe_dump(pod))
    try:
        started = time.monotonic()
        podman("kube", "play", "--tls-verify=false", str(pod_file), timeout=900)
        TIMES[f"kube play {image}"] = round(time.monotonic() - started, 1)
        yield Played(documents, pod_file, name, _pod_address(name))
    finally:
        podman("kube", "down", str(pod_file), check=False)
        podman("volume", "rm", "--force", volume, check=False)
        if token:
            podman("secret", "rm", secret, check=False)


@pytest.fixture
def kubeflow_pod(rootful: Rootful, tmp_path: Path) -> Iterator[Played]:
    yield from _play(rootful, "scipy-kubeflow", tmp_path)


def test_kube_play_runs_the_kubeflow_pod_as_kubernetes_would(rootful: Rootful,
                                                             kubeflow_pod: Played) -> None:
    played = kubeflow_pod
    pod = played.documents[1]
    [container] = pod["spec"]["containers"]
    published = {line["image"]: line for line in rootful.outcomes["publish"]["images"]}
    assert container["image"] == published["scipy-kubeflow"]["reference"]
    assert container["resources"]["requests"] == container["resources"]["limits"]
    prefix = f"/notebook/default/{played.name}"
    base = f"http://{played.address}:8888{prefix}"
    # From outside the pod, at its address, under its prefix, with no token.
    status = _wait(f"{base}/api/status")
    assert "started" in status.json()
    assert requests.get(f"http://{played.address}:8888/api/status", timeout=10
                        ).status_code == 404
    box = f"{played.name}-{played.name}"
    listing = podman("exec", box, "bash", "-c",
                     "id -u; ls -A ~; touch ~/probe && echo writable")
    # The empty claim was seeded by imagekit's start script (its marker), not by Podman.
    assert ".imagekit-seeded" in listing and "writable" in listing, listing
    assert listing.splitlines()[0] == "1000"
    # Podman 4.3 makes the Memory emptyDir a folder on disk, not a tmpfs: it is a mount of
    # its own at /dev/shm. What it is, and whether the notebook's user may write it (on
    # Kubernetes an emptyDir is world-writable), goes into the session's summary.
    shm = podman("exec", box, "bash", "-c", "findmnt -no FSTYPE,TARGET /dev/shm; "
                 "stat -c '%U %a' /dev/shm; touch /dev/shm/probe 2>/dev/null && echo writable "
                 "|| echo 'not writable'").splitlines()
    assert shm[0].split()[1:] == ["/dev/shm"], shm
    TIMES[f"kube play: /dev/shm is {shm[0].split()[0]}, {shm[1]}, {shm[2]} by uid 1000"] = 0
    output = execute(base, "", "python3", "import scipy; print(6 * 7, scipy.__name__)")
    assert "42 scipy" in output


def test_kube_play_runs_the_token_pod_and_kube_down_removes_it(rootful: Rootful,
                                                               tmp_path: Path) -> None:
    token = "c0ffee" * 8
    player = _play(rootful, "base", tmp_path, token=token)
    played = next(player)
    try:
        base = f"http://{played.address}:8888"
        _wait(f"{base}/api?token={token}")
        assert requests.get(f"{base}/api/status", timeout=10).status_code == 403
        assert "42" in execute(base, token, "python3", "print(6 * 7)")
    finally:
        next(player, None)
    assert played.name not in podman("pod", "ps", "--format", "{{.Name}}")
    assert podman("ps", "--all", "--quiet", "--filter", f"pod={played.name}",
                  check=False).strip() == ""


# --- rootless ----------------------------------------------------------------------------

def _rootless() -> tuple[Rootless, dict[str, Any], contextlib.ExitStack]:
    """A user of its own with its own store bootstraps, builds, converts and tests; the
    fixture `rootless` ends the user's session at its teardown."""
    files = [("catalog.yaml", _catalog_text()),
             ("stacks/tiny.yaml", TINY.format(post="echo tiny"))]
    with contextlib.ExitStack() as stack:
        user = stack.enter_context(rootless_user(files))
        o: dict[str, Any] = {}
        for step, args in (("base (mmdebstrap)", ("base",)),
                           ("build tiny (+ SIF)", ("build", "tiny", "--json")),
                           ("test tiny", ("test", "tiny", "--json"))):
            started = time.monotonic()
            result = user.imagekit(*args, "--engine", "podman", check=False)
            TIMES[f"podman rootless: {step}"] = round(time.monotonic() - started, 1)
            o[step.split(" (")[0]] = result
        return user, o, stack.pop_all()


@pytest.fixture(scope="module")
def rootless() -> Iterator[tuple[Rootless, dict[str, Any]]]:
    # The job's folder goes at rootful's teardown (or the session's end).
    user, o, session = background.result(__name__).take("rootless")
    with session:
        yield user, o


def test_rootless_podman_bootstraps_builds_tests_and_converts(
        rootless: tuple[Rootless, dict[str, Any]]) -> None:
    user, o = rootless
    for step, result in o.items():
        assert result.returncode == 0, f"{step}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    assert "mmdebstrap" in o["base"].stdout and "bootstrapped" in o["base"].stdout
    built = json.loads(o["build tiny"].stdout)
    assert {b["image"]: b["status"] for b in built["images"]} == {"base": "built",
                                                                  "tiny": "built"}
    tested = json.loads(o["test tiny"].stdout)["results"]
    assert tested and all(r["ok"] for r in tested), [r for r in tested if not r["ok"]]
    # The user's own store, in its user namespace: root there is the user here.
    info = json.loads(user.podman("info", "--format", "json"))
    assert info["host"]["security"]["rootless"] is True
    assert info["store"]["graphDriverName"] == "overlay"
    [sif] = built["sif"]
    assert Path(sif["path"]).stat().st_uid == user.uid
    listing = subprocess.run(["siftool", "list", sif["path"]], capture_output=True, text=True,
                             check=True).stdout
    assert "FS (Squashfs/*System/amd64)" in listing
    # Inside the SIF the files belong to whom they belong in the image, not to the user
    # who converted it: root's are root's, the notebook user's home is uid 1000's.
    owners = _sif_owners(Path(sif["path"]), ["usr/bin/bash", "home/jovyan"])
    assert owners == {"usr/bin/bash": "0/0", "home/jovyan": "1000/100"}, owners
    # The root Podman does not see the user's images (root's own tiny, if the rootful tests
    # built one, is another image under its own registry's name).
    mine = inspect(suite.ref("tiny", NAMESPACE), user)["Id"].removeprefix("sha256:")
    roots = {line.strip().removeprefix("sha256:")
             for line in podman("images", "--all", "--no-trunc", "--quiet").splitlines()}
    assert mine not in roots
    # Every `podman system service` imagekit started for the user ended with its command
    # (rootless Podman runs it as a child in the user's namespace, which has to end too).
    left = subprocess.run(["pgrep", "-u", str(user.uid), "-f", "podman system service"],
                          capture_output=True, text=True).stdout.split()
    assert not left, f"services left running: {left}"



def _sif_owners(sif: Path, paths: list[str]) -> dict[str, str]:
    """uid/gid of some paths in a SIF's system partition (unsquashfs -lln)."""
    with tempfile.TemporaryDirectory(prefix="imagekit-owners-") as tmp:
        squashfs = ap.system_partition(sif, Path(tmp))
        lines = subprocess.run(["unsquashfs", "-lln", str(squashfs)], capture_output=True,
                               text=True, check=True).stdout.splitlines()
    owners = {}
    for line in lines:
        fields = line.split()
        if len(fields) >= 6 and fields[-1].removeprefix("squashfs-root/") in paths:
            owners[fields[-1].removeprefix("squashfs-root/")] = fields[1]
    return owners
