"""Given the published catalog, when a JupyterHub configured with imagekit's batchspawner
export (wrapspawner's ProfilesSpawner of SlurmSpawners) spawns scipy-hpc on a real Slurm,
then the job runs the SIF through apptainer with the profile's binds, the server reports back
and computes, the host's Slurm is reachable from inside it, and stopping it cancels the job.
The `imagekit tunnel` script runs on the same cluster."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from imagekit.checks.kernel import execute
from imagekit.published.catalog import PublishedCatalog
from tests.integration import apptainer as ap
from tests.integration import suite
from tests.integration.conftest import imagekit
from tests.integration.e2e import slurmhub as sh
from tests.integration.e2e.conftest import Timings
from tests.integration.hubs import Hub
from tests.integration.slurm import Cluster, ensure_user

USER = "e2ehpc"
IMAGE = "scipy-hpc"
JOB = f"jupyterhub-{IMAGE}"

SITE = """
# --- the site's part: how the hub runs Slurm's commands as the user (no sudo here), and
# where its Slurm client finds the cluster.
c.SlurmSpawner.exec_prefix = 'runuser -u {username} --'
c.Spawner.env_keep = ['PATH', 'LANG', 'LC_ALL', 'SLURM_CONF']
"""


@pytest.fixture(scope="module")
def home(cluster: Cluster) -> Iterator[Path]:
    entry = ensure_user(USER)
    sh.add_to_root(USER)
    sh.fresh_home(Path(entry.pw_dir))
    yield Path(entry.pw_dir)
    sh.drop_sif_cache(Path(entry.pw_dir))


@pytest.fixture(scope="module")
def bin_dir(cluster: Cluster) -> Iterator[Path | None]:
    folder = Path(tempfile.mkdtemp(prefix="imagekit-runtime-"))
    yield sh.runtime_dir(folder, cluster)
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def hub(exports: Path, cluster: Cluster, home: Path, bin_dir: Path | None,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    config = (exports / "batchspawner.py").read_text() + SITE
    running = Hub(tmp_path_factory.mktemp("hub-slurm"), config,
                  env=sh.hub_env(cluster, bin_dir))
    yield from sh.serve(running)


def spawn(hub: Hub, timings: Timings, cluster: Cluster, home: Path) -> None:
    browser = hub.login(USER)
    form = hub.spawn_form(browser, USER)
    assert f'value="{IMAGE}"' in form, form[:3000]
    hub.submit_form(browser, USER, {"profile": IMAGE})
    try:
        timings.add("batchspawner on Slurm", hub.wait_ready(USER, timeout=600))
    except Exception as exc:
        raise AssertionError(f"{exc}\n--- job log\n{sh.job_log(home)}\n{cluster.logs()}") \
            from exc


@pytest.fixture(scope="module")
def server(hub: Hub, timings: Timings, cluster: Cluster, home: Path) -> Iterator[str]:
    spawn(hub, timings, cluster, home)
    yield USER
    if hub.server(USER) is not None:
        hub.stop_server(USER)


def test_the_job_runs_under_the_user_and_the_server_reports_back(
        server: str, hub: Hub, cluster: Cluster, published: PublishedCatalog,
        home: Path) -> None:
    (job,) = [j for j in cluster.jobs(USER) if j["name"] == JOB]
    assert job["user"] == USER and job["state"] == "RUNNING"
    log = sh.job_log(home)
    # The job ran the published SIF (by digest) through apptainer, with the profile's binds.
    sif = published.image(IMAGE).sif
    assert sif is not None
    script = cluster.run("scontrol", "write", "batch_script", job["id"], "-")
    assert "apptainer exec --no-https --bind /etc/slurm,/var/run/munge" in script
    assert sif.reference in script
    status = hub.get(USER, "/api/status")
    assert status.status_code == 200, f"{status.text}\n{log}"


def test_a_kernel_runs_code_in_the_sif(server: str, hub: Hub) -> None:
    code = ("import os, numpy; print(os.environ.get('APPTAINER_CONTAINER', '-') != '-', "
            "int(numpy.arange(10).sum()), os.getuid())")
    assert execute(hub.user_url(USER), hub.token, "python3", code).split() == \
        ["True", "45", str(pwd.getpwnam(USER).pw_uid)]


def test_a_terminal_in_the_server_submits_to_the_host_slurm(server: str, hub: Hub,
                                                            cluster: Cluster) -> None:
    output = sh.sbatch_from_terminal(hub, USER)
    assert re.search(r"from-terminal (PENDING|RUNNING)", output)
    job = sh.wait_job(cluster, USER, "from-terminal", "RUNNING")  # seen from the host too
    assert job is not None
    cluster.run("scancel", job["id"])


def test_ipyparallel_engines_run_as_slurm_jobs_in_the_same_sif(server: str, hub: Hub,
                                                               cluster: Cluster) -> None:
    out = execute(hub.user_url(USER), hub.token, "python3", sh.ipyparallel_code(2),
                  timeout=600)
    assert "engines 2 sum 42" in out, out
    assert "jobs ['ipengine']" in out and "same-sif True" in out, out
    sh.wait_job(cluster, USER, "ipengine", None)  # stop_cluster cancelled them


def test_stopping_the_server_cancels_the_job(server: str, hub: Hub, cluster: Cluster) -> None:
    hub.stop_server(USER)
    sh.wait_job(cluster, USER, JOB, None, timeout=60)


def test_spawn_to_ready_twice_more(hub: Hub, timings: Timings, cluster: Cluster,
                                   home: Path) -> None:
    for _ in range(2):
        spawn(hub, timings, cluster, home)
        assert hub.get(USER, "/api/status").status_code == 200
        hub.stop_server(USER)
        sh.wait_job(cluster, USER, JOB, None, timeout=60)


def test_the_tunnel_script_serves_on_the_node(cluster: Cluster, home: Path,
                                              bin_dir: Path | None,
                                              published: PublishedCatalog) -> None:
    shared = Path(tempfile.mkdtemp(prefix="imagekit-sif-"))
    shared.chmod(0o755)
    try:
        sif = shared / f"{IMAGE}.sif"
        _link_or_copy(suite.DIST / f"{IMAGE}_latest.sif", sif)
        script = home / "tunnel.sbatch"
        imagekit("tunnel", IMAGE, "--sif", str(sif), "--cpus", "1", "--mem", "2G",
                 "-o", str(script))
        entry = pwd.getpwnam(USER)
        os.chown(script, entry.pw_uid, entry.pw_gid)
        _submit_and_reach(cluster, home, str(script), sh.hub_env(cluster, bin_dir))
    finally:
        shutil.rmtree(shared, ignore_errors=True)


def test_the_sites_batch_job_serves_for_a_user_without_imagekit(
        cluster: Cluster, home: Path, bin_dir: Path | None,
        published: PublishedCatalog) -> None:
    """The HPC user's way: the batch job the catalog site offers for the image (by the
    published digest), fetched from the site's files, submitted with sbatch by a user whose
    PATH has no imagekit; the job pulls the SIF from the registry itself."""
    imagekit("site")
    offered = suite.DIST / "site" / f"{IMAGE}.sbatch"
    page = (suite.DIST / "site" / f"{IMAGE}.html").read_text()
    assert f'href="{offered.name}"' in page and f"sbatch {offered.name}" in page
    sif = published.image(IMAGE).sif
    assert sif is not None and f"SIF={sif.reference}\n" in offered.read_text()
    # A plain login environment: the cluster's tools (and apptainer), no imagekit, no
    # PYTHONPATH into this checkout.
    path = ":".join([*([str(bin_dir)] if bin_dir else []), "/usr/local/bin", "/usr/bin",
                     "/bin"])
    assert shutil.which("imagekit", path=path) is None
    env = {"PATH": path, "SLURM_CONF": str(cluster.conf), "HOME": str(home), "USER": USER,
           "LANG": "C.UTF-8"}
    fetched = sh.run_as(USER, "cp", str(offered), str(home / offered.name), env=env,
                        cwd=str(home), clean=True)
    assert fetched.returncode == 0, fetched.stderr
    _submit_and_reach(cluster, home, offered.name, env, clean=True)


def _submit_and_reach(cluster: Cluster, home: Path, script: str, env: dict[str, str],
                      clean: bool = False) -> None:
    """The user submits the tunnel job from their home and reaches the server its log names;
    the job is cancelled afterwards. `clean`: in `env` alone, not this process's."""
    with ap.fuse_for_user():
        submitted = sh.run_as(USER, "sbatch", "--parsable", script, env=env, cwd=str(home),
                              clean=clean)
        assert submitted.returncode == 0, submitted.stderr
        job_id = submitted.stdout.strip()
        try:
            _serves(home / f"imagekit-{IMAGE}-{job_id}.log")
        finally:
            cluster.run("scancel", job_id)


def _serves(log: Path) -> None:
    text = ""
    for _ in range(240):
        text = log.read_text() if log.exists() else ""
        if "token=" in text:
            break
        time.sleep(0.5)
    ssh = re.search(r"ssh -N -L (\d+):([^:\s]+):(\d+) (\S+)@(\S+)", text)
    url = re.search(r"http://127\.0\.0\.1:(\d+)/lab\?token=([0-9a-f]+)", text)
    assert ssh and url, text
    port, node = url.group(1), ssh.group(2)
    assert ssh.group(1) == ssh.group(3) == port and ssh.group(4) == USER
    last: Any = None
    for _ in range(240):
        try:
            # What the tunnel delivers: the browser's request for 127.0.0.1:PORT, at NODE:PORT
            # (this machine: its name resolves to 127.0.0.1).
            last = requests.get(f"http://{node}:{port}/api/status",
                                headers={"Host": f"127.0.0.1:{port}"},
                                params={"token": url.group(2)}, timeout=5)
            if last.status_code == 200:
                break
        except requests.RequestException as exc:
            last = exc
        time.sleep(0.5)
    assert getattr(last, "status_code", None) == 200, f"{last}\n{log.read_text()}"
    assert node in ("127.0.0.1", cluster_node()), node


def cluster_node() -> str:
    import socket

    return socket.gethostname().split(".")[0]


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy(source, target)
    target.chmod(0o644)
