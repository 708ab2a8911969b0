"""The BriCS way (seed 001): the hub runs no Slurm command itself. Given imagekit's
batchspawner export written with `--ssh`, when the hub spawns scipy-hpc, then sbatch, squeue
and scancel run over SSH as a service account on the "login node" (Debian's sshd on a
loopback port, key authentication), and the server comes up, computes, and is cancelled."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from imagekit.checks.kernel import execute
from tests.integration.conftest import imagekit
from tests.integration.e2e import slurmhub as sh
from tests.integration.e2e.conftest import Timings
from tests.integration.hubs import Hub, unique_user
from tests.integration.slurm import Cluster, ensure_user
from tests.integration.sshd import LoginNode

ACCOUNT = "e2esvc"
IMAGE = "scipy-hpc"
JOB = f"jupyterhub-{IMAGE}"


@pytest.fixture(scope="module")
def login_node(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoginNode]:
    home = Path(ensure_user(ACCOUNT).pw_dir)
    sh.fresh_home(home)
    sh.add_to_root(ACCOUNT)
    folder = Path(tempfile.mkdtemp(prefix="imagekit-runtime-"))
    runtime = sh.runtime_dir(folder, cluster)
    sh.on_login_path(home, runtime)
    # The login node's Slurm configuration, in the account's SSH environment.
    node = LoginNode(tmp_path_factory.mktemp("login-node"), ACCOUNT,
                     accept_env="JUPYTERHUB_*", session_env={"SLURM_CONF": str(cluster.conf)})
    try:
        node.start()
        yield node
        node.stop()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        sh.drop_sif_cache(home)


@pytest.fixture(scope="module")
def hub(exports: Path, login_node: LoginNode,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    config = imagekit("export", "batchspawner", "--ssh", f"{ACCOUNT}@127.0.0.1:{login_node.port}",
                      "--ssh-config", str(login_node.client_config)).stdout
    # The hub's own environment has no Slurm configuration: only the login node does.
    running = Hub(tmp_path_factory.mktemp("hub-ssh"), config, env={"SLURM_CONF": "/nonexistent"})
    yield from sh.serve(running)


def test_a_login_node_account_runs_the_users_server(hub: Hub, login_node: LoginNode,
                                                     cluster: Cluster, timings: Timings) -> None:
    home = Path(f"/home/{ACCOUNT}")
    for attempt in range(3):
        # A hub user with no account on this machine: the hub never looks users up.
        user = unique_user("brics")
        browser = hub.login(user)
        assert f'value="{IMAGE}"' in hub.spawn_form(browser, user)
        hub.submit_form(browser, user, {"profile": IMAGE})
        try:
            timings.add("batchspawner over SSH", hub.wait_ready(user, timeout=600))
        except Exception as exc:
            raise AssertionError(f"{exc}\n--- job log\n{sh.job_log(home)}\n"
                                 f"--- sshd\n{login_node.log()}") from exc
        (job,) = [j for j in cluster.jobs(ACCOUNT) if j["name"] == JOB]
        assert job["state"] == "RUNNING"
        assert hub.get(user, "/api/status").status_code == 200
        if attempt == 0:
            out = execute(hub.user_url(user), hub.token, "python3",
                          "import getpass, numpy; print(getpass.getuser(), numpy.pi > 3)")
            assert out.split() == [ACCOUNT, "True"]
        hub.stop_server(user)
        sh.wait_job(cluster, ACCOUNT, JOB, None, timeout=60)
