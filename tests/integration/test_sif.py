"""Given a built image, when I ask for a SIF, then real Apptainer runs it as HPC users do."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
import requests

from imagekit.checks.kernel import execute
from imagekit.sif import parse_list
from tests.integration import apptainer as ap
from tests.integration import background, suite
from tests.integration.conftest import ROOT, build_images, imagekit, main_base

pytestmark = [pytest.mark.integration, pytest.mark.sif]

IMAGE = "scipy-hpc"
SIF = suite.DIST / f"{IMAGE}_latest.sif"
FAKE_HOST = "/srv/fakehost"


@pytest.fixture(scope="session")
def hpc_sif(base_image: str) -> dict[str, Any]:
    """scipy-hpc built as a Docker image and converted natively into dist/."""
    report = json.loads(imagekit("build", IMAGE, "--format", "sif", "--json",
                                 "--sif-method", "native").stdout)
    (sif,) = report["sif"]
    assert Path(sif["path"]) == SIF and SIF.is_file()
    return dict(sif)


@pytest.fixture(scope="session")
def root() -> Path:
    try:
        return ap.ensure_root()
    except ap.Unavailable as exc:  # never a skip: without it these tests fail
        pytest.fail(f"no real Apptainer here: {exc}")


@pytest.fixture(scope="session")
def fake_host(root: Path) -> dict[str, str]:
    """Fake host services for the slurm-host binds: slurm.conf, munge socket dir, SSSD pipes."""
    base = root / FAKE_HOST.lstrip("/")
    sources = {}
    for target in ("/etc/slurm", "/var/run/munge", "/var/lib/sss/pipes", "/var/spool/slurm",
                   "/etc/munge"):
        source = base / target.lstrip("/")
        source.mkdir(parents=True, exist_ok=True)
        sources[target] = f"{FAKE_HOST}{target}"
    (base / "etc/slurm/slurm.conf").write_text(
        "ClusterName=imagekit-fake\nSlurmctldHost=localhost\n"
        "NodeName=localhost CPUs=1 State=UNKNOWN\n"
        "PartitionName=debug Nodes=ALL Default=YES State=UP\n")
    return sources


@pytest.fixture
def apptainer(root: Path, hpc_sif: dict[str, Any]) -> Iterator[ap.Apptainer]:
    runner = ap.Apptainer(root)
    runner.place(SIF, "hpc.sif")
    with ap.fuse_for_user():
        yield runner


def _binds(fake_host: dict[str, str]) -> str:
    return ",".join(f"{src}:{dst}" for dst, src in fake_host.items())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- structure ------------------------------------------------------------------------

def test_layout_is_the_one_apptainer_build_writes(hpc_sif: dict[str, Any]) -> None:
    listing = subprocess.run(["siftool", "list", str(SIF)], capture_output=True, text=True,
                             check=True).stdout
    objects = parse_list(listing)
    # What apptainer build writes, then the image's SBOM as the SIF's own SBOM object.
    assert [o.kind for o in objects] == ["Def.FILE", "JSON.Generic", "JSON.Generic",
                                         "FS (Squashfs/*System/amd64)",
                                         "SBOM (cyclonedx-json)"]
    assert {o.group for o in objects} == {"1"}
    header = subprocess.run(["siftool", "header", str(SIF)], capture_output=True, text=True,
                            check=True).stdout
    assert "Primary Architecture: amd64" in header
    assert SIF.read_bytes()[:31] == b"#!/usr/bin/env run-singularity\n"


def test_inspect_shows_labels_and_definition(hpc_sif: dict[str, Any]) -> None:
    out = imagekit("inspect", str(SIF), "--json").stdout
    info = json.loads(out)
    assert info["labels"]["io.imagekit.image"] == IMAGE
    assert info["labels"]["io.imagekit.binds"].startswith("/etc/slurm,")
    # The definition describes the SIF it is in: the built image plus Apptainer's scripts.
    assert f"Bootstrap: docker-daemon\nFrom: {suite.ref(IMAGE)}\n" in info["deffile"]
    assert "%post" not in info["deffile"] and "%runscript" in info["deffile"]
    assert info["launch"] == "#!/usr/bin/env run-singularity"


def test_squashfs_is_gzip_with_the_singularity_dir(hpc_sif: dict[str, Any],
                                                   tmp_path: Path) -> None:
    sqfs = ap.system_partition(SIF, tmp_path)
    stat = subprocess.run(["unsquashfs", "-s", str(sqfs)], capture_output=True, text=True,
                          check=True).stdout
    assert "Compression gzip" in stat
    listing = subprocess.run(["unsquashfs", "-l", "-d", "", str(sqfs)], capture_output=True,
                             text=True, check=True).stdout.split()
    for path in ("/.singularity.d/env/10-docker2singularity.sh", "/.singularity.d/runscript",
                 "/.singularity.d/startscript", "/.singularity.d/test",
                 "/.singularity.d/labels.json", "/etc/slurm", "/etc/munge",
                 "/run/munge",  # /var/run is Debian's symlink to /run
                 "/var/lib/sss/pipes", "/var/spool/slurm", "/proc", "/sys", "/dev", "/home",
                 "/tmp", "/etc/hosts", "/etc/resolv.conf", "/usr/bin/sbatch"):
        assert path in listing, path
    subprocess.run(["unsquashfs", "-d", str(tmp_path / "x"), str(sqfs),
                    ".singularity.d"], capture_output=True, check=True)
    sd = tmp_path / "x/.singularity.d"
    env = (sd / "env/10-docker2singularity.sh").read_text()
    assert 'export SSL_CERT_FILE="${SSL_CERT_FILE:-"/etc/imagekit/ca-bundle.crt"}"' in env
    assert re.search(r'^export PATH="/opt/venv/bin:', env, re.M)
    assert (sd / "runscript").read_text() == '#!/bin/sh\nexec start-notebook.sh "$@"\n'
    assert json.loads((sd / "labels.json").read_text())["io.imagekit.image"] == IMAGE


def test_same_image_gives_the_same_squashfs(hpc_sif: dict[str, Any], tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = _sha256(ap.system_partition(SIF, tmp_path / "a"))
    SIF.with_suffix(".sif.json").unlink()  # forget the conversion, keep the Docker image
    again = json.loads(imagekit("build", IMAGE, "--format", "sif", "--json",
                                "--sif-method", "native").stdout)["sif"][0]
    assert again["status"] == "built"
    assert _sha256(ap.system_partition(Path(again["path"]), tmp_path / "b")) == first


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_an_unchanged_image_is_not_converted_again(hpc_sif: dict[str, Any]) -> None:
    again = json.loads(imagekit("build", IMAGE, "--format", "sif", "--json").stdout)["sif"][0]
    assert again["status"] == "cached"


# --- behaviour under the real apptainer --------------------------------------------------

def test_run_serves_the_notebook_with_its_token(apptainer: ap.Apptainer,
                                               fake_host: dict[str, str]) -> None:
    port = _free_port()
    apptainer.env.update({"JUPYTER_TOKEN": "hpc-token", "XDG_RUNTIME_DIR": f"/run/user/{ap.UID}"})
    proc = apptainer.start("apptainer", "run", "--bind", _binds(fake_host), "/srv/hpc.sif",
                           "--ip=127.0.0.1", f"--port={port}")
    try:
        base = f"http://127.0.0.1:{port}"
        _wait(f"{base}/api/status?token=hpc-token", proc)
        assert requests.get(f"{base}/api/status", timeout=10).status_code == 403
        assert "42" in execute(base, "hpc-token", "python3", "print(6 * 7)")
        out = execute(base, "hpc-token", "python3",
                      "import os, numpy; print(os.getuid(), numpy.arange(10).sum())")
        assert out.split() == [str(ap.UID), "45"]
    finally:
        _stop(proc)


def test_exec_reaches_the_host_slurm_through_the_binds(apptainer: ap.Apptainer,
                                                       fake_host: dict[str, str]) -> None:
    result = apptainer.run("apptainer", "exec", "--bind", _binds(fake_host), "/srv/hpc.sif",
                           "sh", "-c", "sbatch --version; cat /etc/slurm/slurm.conf; "
                                       "grep ^passwd: /etc/nsswitch.conf")
    assert re.search(r"^slurm(-wlm)? \d+\.\d+", result.stdout, re.M)
    assert "ClusterName=imagekit-fake" in result.stdout
    assert "sss" in result.stdout


def test_exec_jupyter_with_the_image_environment(apptainer: ap.Apptainer) -> None:
    result = apptainer.run("apptainer", "exec", "/srv/hpc.sif", "jupyter", "lab", "--version")
    assert re.fullmatch(r"4\.\d+\.\d+", result.stdout.strip())


def test_cleanenv_keeps_the_image_environment(apptainer: ap.Apptainer) -> None:
    apptainer.env["SSL_CERT_FILE"] = "/host/only.pem"
    result = apptainer.run("apptainer", "exec", "--cleanenv", "/srv/hpc.sif", "sh", "-c",
                           "echo $SSL_CERT_FILE; echo $VIRTUAL_ENV; command -v python3")
    assert result.stdout.split() == ["/etc/imagekit/ca-bundle.crt", "/opt/venv",
                                     "/opt/venv/bin/python3"]


def test_apptainer_test_runs_the_checks(apptainer: ap.Apptainer,
                                        fake_host: dict[str, str]) -> None:
    result = apptainer.run("apptainer", "test", "--bind", _binds(fake_host), "/srv/hpc.sif")
    assert "imagekit: scipy-hpc passed its %test checks" in result.stdout


def test_tunnel_script_body_prints_the_way_in_and_serves(
    apptainer: ap.Apptainer, fake_host: dict[str, str], root: Path, tmp_path: Path
) -> None:
    script = tmp_path / "tunnel.sbatch"
    imagekit("tunnel", IMAGE, "--partition", "debug", "--time", "01:00:00", "--sif",
             "/srv/hpc.sif", "--runtime", "apptainer", "--output", str(script))
    text = script.read_text()
    assert "#SBATCH --partition=debug" in text and "unset XDG_RUNTIME_DIR" in text
    # The script binds the real host paths; give this root's "host" those paths.
    for target in fake_host:
        if not target.startswith("/var/run/"):  # /run is a tmpfs in the sandbox: see below
            (root / target.lstrip("/")).mkdir(parents=True, exist_ok=True)
    shutil.copy(script, root / "srv/tunnel.sbatch")  # pytest's tmp is not readable by uid 2345
    apptainer.env.update({"IMAGEKIT_NODE": "127.0.0.1", "SLURM_JOB_ID": "4242",
                          "IMAGEKIT_LOGIN": "login.example.org",
                          "XDG_RUNTIME_DIR": f"/run/user/{ap.UID}"})
    argv = apptainer.argv(["bash", "/srv/tunnel.sbatch"])
    # bwrap: the munge socket dir lives under the tmpfs /run.
    argv[argv.index("--tmpfs") + 2:argv.index("--tmpfs") + 2] = ["--dir", "/run/munge"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        lines: list[str] = []
        assert proc.stdout is not None
        while not any("token=" in line for line in lines):
            line = proc.stdout.readline()
            assert line, "".join(lines)
            lines.append(line)
        text = "".join(lines)
        ssh = re.search(r"ssh -N -L (\d+):127\.0\.0\.1:(\d+) aptest@login\.example\.org", text)
        assert ssh and ssh.group(1) == ssh.group(2), text
        url = re.search(r"http://127\.0\.0\.1:(\d+)/lab\?token=([0-9a-f]{48})", text)
        assert url and url.group(1) == ssh.group(1), text
        port, token = url.group(1), url.group(2)
        _wait(f"http://127.0.0.1:{port}/api/status?token={token}", proc)
        assert "42" in execute(f"http://127.0.0.1:{port}", token, "python3", "print(6 * 7)")
    finally:
        _stop(proc)


def test_the_rendered_definition_builds_with_apptainer() -> None:
    """recipes/scipy-kubeflow/Singularity.def as `imagekit render` writes it, bootstrapped
    from a `docker save` of its parent instead of the engine, built unprivileged by
    apptainer itself, then run (beside the rest of the suite: `beside` below)."""
    _outcome("rendered definition")


def _rendered_definition_builds_with_apptainer(root: Path, client: Any) -> None:
    build_images("scipy-kubeflow")
    apptainer = ap.Apptainer(root)
    work = root / "srv/recipe"
    shutil.rmtree(work, ignore_errors=True)
    imagekit("render", "scipy-kubeflow")
    shutil.copytree(suite.PROJECT / "recipes/scipy-kubeflow", work)
    parent = suite.ref("scipy")
    with (work / "parent.tar").open("wb") as f:
        for chunk in client.images.get(parent).save(named=True):
            f.write(chunk)
    text = (work / "Singularity.def").read_text()
    header, _, rest = text.partition("\n\n")
    assert header == f"Bootstrap: docker-daemon\nFrom: {parent}"
    (work / "Singularity.def").write_text(
        "Bootstrap: docker-archive\nFrom: /srv/recipe/parent.tar\n\n" + rest)
    subprocess.run(["chown", "-R", f"{ap.UID}:{ap.GID}", str(work)], check=True)
    with ap.fuse_for_user():
        _build_and_serve(apptainer, work)


def _build_and_serve(apptainer: ap.Apptainer, work: Path) -> None:
    # --force also lets the child's %labels replace the ones inherited from the parent. The
    # subject is the definition, not the squashfs: gzip's fastest level (mksquashfs's own
    # default, 9, spent 71.6 CPU-s on 1.2 GB of Python packages here, level 1 10.7).
    result = apptainer.run("apptainer", "build", "--force", "--fakeroot", "--ignore-subuid",
                           "--mksquashfs-args", "-Xcompression-level 1",
                           "/srv/recipe/out.sif", "Singularity.def", cwd="/srv/recipe",
                           timeout=1800)
    assert "Build complete" in result.stdout + result.stderr
    labels = apptainer.run("apptainer", "inspect", "--labels", "/srv/recipe/out.sif").stdout
    assert "io.imagekit.image: scipy-kubeflow" in labels
    tested = apptainer.run("apptainer", "test", "/srv/recipe/out.sif")
    assert "passed its %test checks" in tested.stdout
    port = _free_port()
    apptainer.env["JUPYTER_TOKEN"] = "def-token"
    proc = apptainer.start("apptainer", "run", "/srv/recipe/out.sif", "--ip=127.0.0.1",
                           f"--port={port}")
    try:
        _wait(f"http://127.0.0.1:{port}/api/status?token=def-token", proc)
    finally:
        _stop(proc)
        shutil.rmtree(work, ignore_errors=True)


def _wait(url: str, proc: subprocess.Popen[str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            output = proc.stdout.read() if proc.stdout else ""
            raise AssertionError(f"exited {proc.returncode}:\n{output[-3000:]}")
        try:
            if requests.get(url, timeout=3).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{url} did not answer within {timeout} s")


def _stop(proc: subprocess.Popen[str]) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=20)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


@pytest.mark.docker_engine  # Bootstrap: docker-daemon; Podman's archive route is in test_podman.py
def test_the_apptainer_method_gives_the_sif_the_native_method_gives() -> None:
    """`--sif-method apptainer` runs the real apptainer 1.4.5 (as root, from the sid root)
    on the same converted definition: both SIFs embed that definition and carry the same
    runscript, startscript and %test, which passes under apptainer for an ordinary user
    (beside the rest of the suite: `beside` below). The catalog asks for zstd: both methods
    make a zstd squashfs, and Apptainer 1.4.5 runs it (the gzip SIFs of both methods are
    run in this module, test_engines.py and test_podman.py)."""
    _outcome("methods")


def _apptainer_method_gives_what_native_gives(root: Path, tmp_path: Path,
                                              client: Any) -> None:
    tools = tmp_path / "bin"
    tools.mkdir()
    shutil.copy(ROOT / "tests/integration/bin/sid-root-apptainer", tools / "apptainer")
    (tools / "sid-root.env").write_text(f"SID_ROOT={root}\nSLURM_DIR={tmp_path}\n")
    sifs = {}
    for method in ("apptainer", "native"):
        project = tmp_path / method
        catalog = suite.copy_project(project)
        catalog.write_text(catalog.read_text() + "sif: {compression: zstd}\n")
        # Whoever converts: what stays in their home, with Apptainer's cache pinned there
        # (a site's shell may point it elsewhere) and Docker's own config where it was.
        home = tmp_path / f"{method}-home"
        home.mkdir()
        cache = str(home / "apptainer-cache")
        env = {"PATH": f"{tools}:{os.environ['PATH']}", "SID_ROOT_BINDS": "/run/docker.sock",
               "HOME": str(home), "APPTAINER_CACHEDIR": cache, "SINGULARITY_CACHEDIR": cache,
               "DOCKER_CONFIG": os.environ.get("DOCKER_CONFIG", str(Path.home() / ".docker"))}
        report = json.loads(imagekit("build", "base", "--format", "sif", "--json",
                                     "--sif-method", method, catalog=project / "catalog.yaml",
                                     env=env).stdout)["sif"][0]
        assert (report["method"], report["compression"]) == (method, "zstd-3")
        sifs[method] = Path(report["path"])
        # apptainer's own cache would keep a copy of every layer of the image (gigabytes
        # per image, never read again): the conversion leaves none behind.
        assert [p for p in home.rglob("*") if p.is_file()] == [], method
    inspected = {m: json.loads(imagekit("inspect", str(p), "--json").stdout)
                 for m, p in sifs.items()}
    assert inspected["apptainer"]["deffile"] == inspected["native"]["deffile"]
    assert f"From: {suite.ref('base')}" in inspected["native"]["deffile"]
    scripts, labels = {}, {}
    for method, sif in sifs.items():
        out = tmp_path / f"{method}-root"
        partition = ap.system_partition(sif, tmp_path / method)
        stat = subprocess.run(["unsquashfs", "-s", str(partition)], capture_output=True,
                              text=True, check=True).stdout
        assert "Compression zstd" in stat, (method, stat)
        subprocess.run(["unsquashfs", "-d", str(out), str(partition), ".singularity.d"],
                       capture_output=True, check=True)
        # apptainer keeps the definition's indentation and blank lines; the shell does not
        # care, and neither does anyone reading them.
        scripts[method] = {name: [line.strip() for line in
                                  (out / ".singularity.d" / name).read_text().splitlines()
                                  if line.strip()]
                           for name in ("runscript", "startscript", "test", "runscript.help")}
        labels[method] = json.loads((out / ".singularity.d/labels.json").read_text())
    assert scripts["apptainer"] == scripts["native"]
    image_labels = client.images.get(suite.ref("base")).labels
    for method in sifs:
        assert image_labels.items() <= labels[method].items(), method
    runner = ap.Apptainer(root)
    shared = Path(tempfile.mkdtemp(prefix="imagekit-sif-methods-"))  # the user must read it
    shared.chmod(0o755)
    with ap.fuse_for_user():
        for method, sif in sifs.items():
            readable = shared / sif.name.replace(".sif", f"-{method}.sif")
            shutil.copy(sif, readable)
            readable.chmod(0o644)
            inside = runner.place(readable, readable.name)
            result = runner.run("apptainer", "test", inside)
            assert "passed its %test checks" in result.stdout + result.stderr, method
            helped = runner.run("apptainer", "run-help", inside).stdout
            assert "Converted from the built image" in helped, method
    shutil.rmtree(shared)


def beside(folder: Path) -> background.Parts:
    """The module's two apptainer builds (minutes of mksquashfs each), run beside the rest
    of the suite (tests/integration/background.py); each test takes its own outcome, and an
    assertion that failed here fails it with its message."""
    main_base()
    root = ap.ensure_root()
    client = docker.from_env(timeout=900)
    (folder / "methods").mkdir()
    parts = background.Parts()
    try:
        parts.run("rendered definition",
                  lambda: _rendered_definition_builds_with_apptainer(root, client))
        if os.environ.get("IMAGEKIT_ENGINE") != "podman":  # the docker_engine marker's reach
            parts.run("methods", lambda: _apptainer_method_gives_what_native_gives(
                root, folder / "methods", client))
    finally:
        client.close()
    return parts


def _outcome(name: str) -> None:
    background.result(__name__).take(name)
