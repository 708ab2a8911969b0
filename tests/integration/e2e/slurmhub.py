"""What the Slurm hubs share: the cluster, the notebook user, and the `apptainer` command
their jobs find on PATH (the real one from Debian sid, tests/integration/bin)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from tests.integration import apptainer as ap
from tests.integration.hubs import Hub
from tests.integration.slurm import Cluster

WRAPPER = Path(__file__).resolve().parents[1] / "bin" / "sid-root-apptainer"


def native_apptainer() -> bool:
    return shutil.which("apptainer", path="/usr/local/bin:/usr/bin:/bin") is not None


def runtime_dir(folder: Path, cluster: Cluster) -> Path | None:
    """A directory to put first on the jobs' PATH, or None where apptainer is installed.

    It holds `apptainer` and `singularity`: tests/integration/bin/sid-root-apptainer, which
    runs sid's apptainer in the cached sid root as the job's user, and the file telling it
    where that root and the cluster's configuration are.
    """
    if native_apptainer():
        return None
    root = ap.ensure_root()
    # The node's side of the slurm-host binds (bubblewrap cannot create mount points in the
    # root-owned root; apptainer refuses a bind whose source is missing).
    for path in ("etc/slurm", "var/lib/sss/pipes", "var/spool/slurm", "etc/munge"):
        (root / path).mkdir(parents=True, exist_ok=True)
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o755)
    shutil.copy(WRAPPER, folder / "apptainer")
    (folder / "apptainer").chmod(0o755)
    (folder / "singularity").unlink(missing_ok=True)
    (folder / "singularity").symlink_to("apptainer")
    (folder / "sid-root.env").write_text(f"SID_ROOT={root}\nSLURM_DIR={cluster.dir}\n")
    return folder


def fresh_home(home: Path) -> None:
    """Forget what earlier runs left in a test account's home (its IPython profile, logs,
    and its Apptainer cache: the account's node has never seen the SIF it pulls)."""
    drop_sif_cache(home)
    for path in home.iterdir():
        if path.name.startswith((".ipython", ".jupyter")) or \
                path.suffix in (".log", ".out", ".sbatch"):
            shutil.rmtree(path) if path.is_dir() else path.unlink()


def drop_sif_cache(home: Path) -> None:
    """The account's Apptainer cache, once its module has ended: the SIFs it pulled by
    digest, gigabytes that the rest of the session's disk needs."""
    shutil.rmtree(home / ".apptainer", ignore_errors=True)


MARK = "# imagekit e2e: the cluster's apptainer"


def on_login_path(home: Path, bin_dir: Path | None) -> None:
    """Put the runtime on the account's login PATH, as a site's profile or module would:
    jobs submitted with `--get-user-env=L` and a kept-variable list take PATH from there."""
    profile = home / ".profile"
    lines = [x for x in profile.read_text().splitlines() if MARK not in x]
    if bin_dir is not None:
        lines.append(f'PATH="{bin_dir}:$PATH"  {MARK}')
    profile.write_text("\n".join(lines) + "\n")


def add_to_root(name: str) -> None:
    """The job's user, known in the sid root as on the host (apptainer needs its entry)."""
    import pwd

    entry = pwd.getpwnam(name)
    if not native_apptainer():
        ap.add_user(ap.ensure_root(), name, entry.pw_uid, entry.pw_gid, entry.pw_dir)


def wait_job(cluster: Cluster, user: str, name: str, state: str | None,
             timeout: float = 120) -> dict[str, str] | None:
    """The user's job called `name` once it is in `state` (None: once it has left squeue)."""
    deadline = time.monotonic() + timeout
    job = None
    while time.monotonic() < deadline:
        job = next((j for j in cluster.jobs(user) if j["name"] == name), None)
        if (state is None and job is None) or (job is not None and job["state"] == state):
            return job
        time.sleep(0.5)
    raise AssertionError(f"job {name} of {user}: wanted {state or 'gone'}, last seen {job}\n"
                         f"{cluster.jobs()}")


def job_log(home: Path) -> str:
    logs = sorted(home.glob("jupyterhub_slurmspawner_*.log"), key=os.path.getmtime)
    return logs[-1].read_text(errors="replace")[-4000:] if logs else "(no job log)"


def fuse_mode() -> int:
    return stat.S_IMODE(os.stat("/dev/fuse").st_mode)


def hub_env(cluster: Cluster, bin_dir: Path | None) -> dict[str, str]:
    path = os.environ["PATH"]
    if bin_dir is not None:
        path = f"{bin_dir}:{path}"
    return {"SLURM_CONF": str(cluster.conf), "PATH": path}


def ipyparallel_code(engines: int) -> str:
    """Start the image's `slurm` profile; each engine says which Slurm job and image it is in."""
    return (
        "import os, ipyparallel as ipp\n"
        f"cluster = ipp.Cluster(profile='slurm', n={engines})\n"
        "cluster.start_cluster_sync()\n"
        "rc = cluster.connect_client_sync()\n"
        f"rc.wait_for_engines({engines}, timeout=300)\n"
        "where = rc[:].apply_sync(lambda: (__import__('os').environ.get('SLURM_JOB_NAME'), "
        "__import__('os').environ.get('APPTAINER_CONTAINER', '')))\n"
        "print('engines', len(rc.ids), 'sum', sum(rc[:].apply_sync(lambda: 21)))\n"
        "print('jobs', sorted({job for job, _ in where}))\n"
        "print('same-sif', all(sif == os.environ['APPTAINER_CONTAINER'] for _, sif in where))\n"
        "cluster.stop_cluster_sync()\n"
    )


def sbatch_from_terminal(hub: Hub, user: str) -> str:
    command = ("sbatch --parsable --job-name=from-terminal --wrap 'sleep 300' "
               "&& squeue -h -u $(id -un) -o '%j %T'")
    return hub.terminal(user, command, r"from-terminal (PENDING|RUNNING)")


def run_as(user: str, *argv: str, env: dict[str, str] | None = None,
           cwd: str | None = None, clean: bool = False) -> subprocess.CompletedProcess[str]:
    """`argv` as `user`, in this environment with `env` on top, or in `env` alone (clean)."""
    runuser = shutil.which("runuser") or "/usr/sbin/runuser"  # found on this PATH
    return subprocess.run([runuser, "-u", user, "--", *argv], capture_output=True,
                          text=True, env=(env or {}) if clean else {**os.environ, **(env or {})},
                          cwd=cwd, timeout=120)


def serve(hub: Hub) -> Iterator[Hub]:
    """A fixture body: the hub running while its jobs may mount SIFs (/dev/fuse for users)."""
    with ap.fuse_for_user():
        hub.start()
        try:
            yield hub
        finally:
            hub.stop()
