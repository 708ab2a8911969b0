"""A real one-node Slurm cluster for the end-to-end tests: Debian's munge, slurmctld, slurmd.

State, spool, logs and the key live in a temporary directory. The node declares more CPUs
and memory than this machine has (`SlurmdParameters=config_overrides`), so the notebook job,
a terminal's job and IPyParallel's engines run side by side instead of queueing on 2 cores.

slurmd runs configless (`--conf-server`): it fetches slurm.conf from slurmctld and points
every job's SLURM_CONF at its copy, as many sites do. Clients on this host read
`SLURM_CONF=<dir>/slurm.conf`. munged listens on the standard socket, /run/munge/munge.socket.2,
which is what a container sees through the slurm-host profile's /var/run/munge bind.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

MUNGE_DIR = Path("/run/munge")
MUNGE_SOCKET = MUNGE_DIR / "munge.socket.2"


class ClusterError(Exception):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers(path: Path) -> bool:
    if not path.exists():
        return False
    with socket.socket(socket.AF_UNIX) as s:
        try:
            s.connect(str(path))
        except OSError:
            return False
    return True


class Cluster:
    """munged + slurmctld + slurmd, started and stopped by the tests."""

    def __init__(self, cpus: int = 8, memory_mb: int = 32000) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="imagekit-slurm-"))
        self.dir.chmod(0o755)  # slurm.conf must be readable by the users who submit
        self.conf = self.dir / "slurm.conf"
        self.cpus, self.memory_mb = cpus, memory_mb
        self.node = socket.gethostname().split(".")[0]
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def start(self) -> None:
        for tool in ("munged", "slurmctld", "slurmd", "sbatch"):
            if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
                raise ClusterError(f"{tool} is not installed (scripts/setup.sh installs it)")
        if _answers(MUNGE_SOCKET):
            raise ClusterError(f"a munged already answers on {MUNGE_SOCKET}: the tests run "
                               "their own one-node cluster and need that socket")
        self._munge()
        ctld_port, d_port = free_port(), free_port()
        for sub in ("state", "spool", "log"):
            (self.dir / sub).mkdir()
        self.conf.write_text("\n".join([
            "ClusterName=imagekit",
            f"SlurmctldHost={self.node}(127.0.0.1)",
            f"SlurmctldPort={ctld_port}",
            f"SlurmdPort={d_port}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            f"AuthInfo=socket={MUNGE_SOCKET}",
            "CredType=cred/munge",
            f"StateSaveLocation={self.dir}/state",
            f"SlurmdSpoolDir={self.dir}/spool",
            f"SlurmctldPidFile={self.dir}/slurmctld.pid",
            f"SlurmdPidFile={self.dir}/slurmd.pid",
            f"SlurmctldLogFile={self.dir}/log/slurmctld.log",
            f"SlurmdLogFile={self.dir}/log/slurmd.log",
            "SlurmctldParameters=enable_configless",
            "SlurmdParameters=config_overrides",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core_Memory",
            "DefMemPerCPU=1000",
            "ReturnToService=2",
            "MpiDefault=none",
            "SchedulerType=sched/backfill",
            "KillWait=5",
            f"NodeName={self.node} NodeAddr=127.0.0.1 CPUs={self.cpus} "
            f"RealMemory={self.memory_mb} State=UNKNOWN",
            f"PartitionName=debug Nodes={self.node} Default=YES MaxTime=INFINITE State=UP",
            "",
        ]))
        self._daemon(["slurmctld", "-D", "-i", "-f", str(self.conf)], "slurmctld")
        self._wait(lambda: self._run("scontrol", "ping").returncode == 0, "slurmctld")
        self._daemon(["slurmd", "-D", "--conf-server", f"127.0.0.1:{ctld_port}"], "slurmd")
        self._wait(self._node_idle, "slurmd (node idle)")

    def _munge(self) -> None:
        key = self.dir / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        MUNGE_DIR.mkdir(parents=True, exist_ok=True)
        MUNGE_DIR.chmod(0o755)
        self._daemon(["munged", "-F", "--force", "-S", str(MUNGE_SOCKET), "--key-file",
                      str(key), "--pid-file", str(self.dir / "munged.pid"),
                      "--seed-file", str(self.dir / "munge.seed"),
                      "--log-file", str(self.dir / "munged.log")], "munged")
        self._wait(lambda: _answers(MUNGE_SOCKET), "munged")

    def _daemon(self, argv: list[str], name: str) -> None:
        log = (self.dir / f"{name}.out").open("wb")
        self.procs.append((name, subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                                  env=self.env, start_new_session=True)))

    def _wait(self, ready: Callable[[], bool], what: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():
                return
            for name, proc in self.procs:
                if proc.poll() is not None:
                    raise ClusterError(f"{name} exited {proc.returncode}: {self.logs()}")
            time.sleep(0.3)
        raise ClusterError(f"{what} did not come up in {timeout:.0f} s: {self.logs()}")

    def _node_idle(self) -> bool:
        out = self._run("sinfo", "-h", "-o", "%t").stdout.strip()
        return out in ("idle", "mix", "alloc")

    def logs(self) -> str:
        parts = []
        for path in sorted(self.dir.glob("*.out")) + sorted((self.dir / "log").glob("*.log")):
            if path.exists():
                parts.append(f"--- {path.name}\n{path.read_text(errors='replace')[-2000:]}")
        return "\n".join(parts)

    def _run(self, *argv: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
        words = list(argv) if user is None else ["runuser", "-u", user, "--", *argv]
        return subprocess.run(words, capture_output=True, text=True, env=self.env,
                              timeout=60)

    def run(self, *argv: str, user: str | None = None) -> str:
        result = self._run(*argv, user=user)
        if result.returncode != 0:
            raise ClusterError(f"{' '.join(argv)}: {result.stderr.strip()}")
        return result.stdout

    def jobs(self, user: str | None = None) -> list[dict[str, str]]:
        """squeue's jobs (all states it still shows): id, name, user, state."""
        argv = ["squeue", "-h", "-o", "%i|%j|%u|%T"]
        if user:
            argv += ["-u", user]
        rows = [line.split("|") for line in self.run(*argv).splitlines() if line.strip()]
        return [dict(zip(("id", "name", "user", "state"), row, strict=True)) for row in rows]

    def stop(self) -> None:
        # Every user's jobs (a failed test may leave a notebook running), before slurmd goes.
        subprocess.run(["scancel", "--full", "--partition=debug"], env=self.env,
                       capture_output=True, timeout=30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and self._run("squeue", "-h").stdout.strip():
            time.sleep(0.5)
        for _, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.procs.clear()
        MUNGE_SOCKET.unlink(missing_ok=True)
        shutil.rmtree(self.dir, ignore_errors=True)


def ensure_user(name: str) -> pwd.struct_passwd:
    """A local account (with a home) for the notebook user or the SSH service account."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        result = subprocess.run(["useradd", "--create-home", "--user-group", "--shell",
                                 "/bin/bash", name], capture_output=True, text=True)
        if result.returncode != 0:
            raise ClusterError(f"useradd {name}: {result.stderr.strip()}") from None
        return pwd.getpwnam(name)
