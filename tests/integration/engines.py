"""The engines users run today, beside the host's: Debian sid's Docker 28 (with its buildx
plugin, on dockerd's own image store or containerd's) and Podman 5, from a sid root.

sid's engines need sid's glibc, so each runs inside the root, entered for real: a private
mount namespace, the root bound onto itself (a mount point, or importing an image fails with
`remount /, flags: 0x84000`), proc mounted, /sys and /dev bound recursively (without /sys:
"Devices cgroup isn't mounted"), then pivot_root into it (with chroot, `docker exec` would
land in the host's root). Each engine is started empty, with its own data root, exec root,
socket and bridge, which is masqueraded by hand (`--iptables=false`) as the runners' are
(tests/integration/runners.py): never `--bridge none`, which deletes the host engine's
docker0. The host's engine, its bridge and its images are left alone.

sid's docker client and buildx plugin are Go programs that run on the host: a command runs on
such an engine with `DOCKER_HOST` at its socket, PATH starting at a folder that holds sid's
`docker`, and DOCKER_CONFIG at a folder whose cli-plugins hold sid's buildx.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker

from tests.integration.apptainer import APT, bwrap_root, make_sid_root, run_or_unavailable
from tests.integration.runners import bridge_rules

ROOT = Path(os.environ.get("IMAGEKIT_ENGINES_ROOT", "/var/cache/imagekit/engines-sid"))
ROOT_OF_TESTS = Path(__file__).resolve().parent
PACKAGES = "docker.io docker-cli docker-buildx containerd runc iptables podman crun " \
           "fuse-overlayfs catatonit netavark aardvark-dns uidmap ca-certificates pigz"
_MAKING = threading.Lock()


HOST_PODMAN = Path("/etc/containers/containers.conf.d/50-imagekit-host.conf")
PODMAN_SUBNET = "10.231.0.0/24"  # the root's Podman's default network


def _podman_conf(root: Path) -> None:
    """The root's Podman gets what scripts/podman-host.sh found this kernel needs, and a
    network of its own: the host's Podman 4.3 takes 10.88.0.0/16 for its default network,
    and its other CNI networks the /24s after it (10.89.0.0/24 was taken here)."""
    conf = root / "etc/containers/containers.conf.d/50-imagekit.conf"
    conf.parent.mkdir(parents=True, exist_ok=True)
    host = HOST_PODMAN.read_text() if HOST_PODMAN.is_file() else ""
    # iptables, as dockerd and the host's Podman use: a table of nftables' own would not
    # get past the FORWARD chain dockerd sets to drop.
    conf.write_text(host + f'\n[network]\ndefault_subnet = "{PODMAN_SUBNET}"\n'
                    'firewall_driver = "iptables"\n')


def ensure_root() -> Path:
    """sid's engines in a root of their own, made once and kept (about 700 MB)."""
    with _MAKING:
        if not ((ROOT / "usr/sbin/dockerd").exists() and (ROOT / "usr/bin/podman").exists()):
            apt = " ".join(APT)
            # Nothing is started while installing (policy-rc.d), and nothing runs but apt.
            make_sid_root(ROOT, "printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d && "
                                "chmod 755 /usr/sbin/policy-rc.d && "
                                f"apt-get {apt} update -qq && DEBIAN_FRONTEND=noninteractive "
                                f"apt-get {apt} install -y -qq --no-install-recommends "
                                f"{PACKAGES} && rm -f /usr/sbin/policy-rc.d && apt-get clean")
        _podman_conf(ROOT)
        return ROOT


def version_of(root: Path, package: str) -> str:
    return run_or_unavailable([*bwrap_root(root), "dpkg-query", "-W", "-f", "${Version}",
                               package]).strip()


@dataclass
class SidEngine:
    """One engine of the sid root, started empty: `docker` (dockerd 28) or `podman` (its
    Docker API service, rootful)."""

    name: str  # short: its bridge is br-ik<name>
    kind: str  # docker, podman
    subnet: int  # 172.31.<subnet>.0/24
    containerd_store: bool = False
    root: Path = ROOT
    process: subprocess.Popen[bytes] | None = None
    client: Any = None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def state(self) -> str:
        """The engine's own folder inside the root (data, exec root, socket, log)."""
        return f"/var/lib/ik-{self.name}"

    @property
    def host_state(self) -> Path:
        return self.root / self.state.lstrip("/")

    @property
    def socket(self) -> Path:
        return self.host_state / "engine.sock"

    @property
    def bridge(self) -> str:
        return f"br-ik{self.name}"

    def _rules(self, verb: str) -> list[list[str]]:
        return bridge_rules(self.bridge, f"172.31.{self.subnet}.0/24", verb)

    def _command(self) -> str:
        state = self.state
        if self.kind == "docker":
            config = f"{state}/daemon.json"
            return (f"exec dockerd --config-file {config} --data-root {state}/data "
                    f"--exec-root {state}/exec --pidfile {state}/dockerd.pid "
                    f"--host unix://{state}/engine.sock --bridge {self.bridge} "
                    "--iptables=false --ip-masq=false")
        # Podman's Docker API, rootful, its storage and network state under the folder.
        return (f"exec podman --root {state}/data --runroot {state}/exec "
                f"system service --time 0 unix://{state}/engine.sock")

    def start(self, host_bin: Path) -> None:
        """Start the engine; `host_bin`: a folder for the host-side `docker` and buildx, or
        the `podman` that runs the root's."""
        if self.host_state.exists():
            shutil.rmtree(self.host_state)
        self.host_state.mkdir(parents=True)
        if self.kind == "podman":
            # No daemon: imagekit starts Podman's API service through this `podman`, as it
            # does the host's; storage and run root are the engine's own, empty.
            folder = host_bin / self.name
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copy(ROOT_OF_TESTS / "bin" / "sid-root-podman", folder / "podman")
            (folder / "sid-root-podman.env").write_text(
                f"ENGINES_ROOT={self.root}\nPODMAN_STATE={self.state}\n")
            self.env = {"PATH": f"{folder}:{os.environ['PATH']}", "IMAGEKIT_ENGINE": "podman"}
            return
        (self.host_state / "daemon.json").write_text(json.dumps(
            {"features": {"containerd-snapshotter": self.containerd_store}}))
        for argv in (["ip", "link", "add", self.bridge, "type", "bridge"],
                     ["ip", "addr", "add", f"172.31.{self.subnet}.1/24", "dev", self.bridge],
                     ["ip", "link", "set", self.bridge, "up"], *self._rules("-I")):
            subprocess.run(argv, check=True, capture_output=True, timeout=30)
        root = shlex.quote(str(self.root))
        enter = (f"mount --bind {root} {root} && mount -t proc proc {root}/proc && "
                 f"mount --rbind /sys {root}/sys && mount --rbind /dev {root}/dev && "
                 f"mkdir -p {root}/.old && cd {root} && pivot_root . .old && "
                 f"exec chroot . sh -c {shlex.quote('umount -l /.old && ' + self._command())}")
        log = (self.host_state / "engine.log").open("wb")
        self.process = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", enter],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.env = self._client_env(host_bin)
        # At nice 19 beside the suite's builds, dockerd and its containerd may wait long for
        # a core.
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            with contextlib.suppress(docker.errors.DockerException):
                self.client = docker.DockerClient(base_url=f"unix://{self.socket}", timeout=900)
                self.client.ping()
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.5)
        said = (self.host_state / "engine.log").read_text(errors="replace")[-3000:]
        self.stop()
        raise AssertionError(f"{self.name}'s engine did not come up:\n{said}")

    def _client_env(self, host_bin: Path) -> dict[str, str]:
        """How a command on the host reaches this engine: for Docker, sid's client and buildx
        (a folder of links into the root, first in PATH); for Podman, its API socket."""
        env = {"DOCKER_HOST": f"unix://{self.socket}"}
        if self.kind == "docker":
            plugins = host_bin / "config" / "cli-plugins"
            plugins.mkdir(parents=True, exist_ok=True)
            for link, target in (
                    (host_bin / "bin" / "docker", self.root / "usr/bin/docker"),
                    (plugins / "docker-buildx",
                     self.root / "usr/libexec/docker/cli-plugins/docker-buildx")):
                link.parent.mkdir(parents=True, exist_ok=True)
                if not link.is_symlink():
                    link.symlink_to(target)
            env["PATH"] = f"{host_bin / 'bin'}:{os.environ['PATH']}"
            env["DOCKER_CONFIG"] = str(host_bin / "config")
        return env

    def log_tail(self, size: int = 4000) -> str:
        """The end of dockerd's log (Podman's service is imagekit's own: its words are in
        the failing step's stderr)."""
        log = self.host_state / "engine.log"
        return log.read_text(errors="replace")[-size:] if log.is_file() else "(no log)"

    def stop(self) -> None:
        if self.kind == "podman":
            self._stop_podman()
            return
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, 15)
            try:
                self.process.wait(timeout=90)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait()
        for rule in self._rules("-D"):
            subprocess.run(rule, capture_output=True, timeout=30, check=False)
        subprocess.run(["ip", "link", "delete", self.bridge], capture_output=True, timeout=30,
                       check=False)
        # The namespace's mounts went with its last process; the engine's files go too.
        shutil.rmtree(self.host_state, ignore_errors=True)


    def _stop_podman(self) -> None:
        """Whatever the engine's calls left: containers (netavark takes their network's
        rules and bridge with the last one), processes, then any rule of its subnet left by a
        container that was killed, and its files."""
        podman = self.env.get("PATH", "").split(":")[0] + "/podman"
        if Path(podman).is_file():
            subprocess.run([podman, "system", "reset", "--force"], check=False,
                           capture_output=True, timeout=300)
        subprocess.run(["pkill", "-f", f"--root {self.state}/storage"], check=False,
                       capture_output=True)
        for pid in _rooted_in(f"{self.state}/storage/"):  # a killed build's RUN goes on
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
        for table in ("filter", "nat"):
            rules = subprocess.run(["iptables-save", "-t", table], capture_output=True,
                                   text=True, check=False).stdout.splitlines()
            for rule in rules:
                if rule.startswith("-A ") and PODMAN_SUBNET in rule:
                    subprocess.run(["iptables", "-w", "60", "-t", table, "-D",
                                    *shlex.split(rule)[1:]], capture_output=True, check=False)
        said = subprocess.run(["ip", "-br", "addr", "show", "podman0"], capture_output=True,
                              text=True, check=False).stdout
        if PODMAN_SUBNET.rpartition(".")[0] in said:
            subprocess.run(["ip", "link", "delete", "podman0"], capture_output=True, check=False)
        shutil.rmtree(self.host_state, ignore_errors=True)


def _rooted_in(storage: str) -> list[int]:
    """The processes whose root file system is a layer of that storage."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for line in (proc / "mountinfo").read_text().splitlines():
                fields = line.split()
                if fields[4] == "/" and storage in line:
                    found.append(int(proc.name))
                    break
    return found


@contextlib.contextmanager
def running(engine: SidEngine, host_bin: Path) -> Iterator[SidEngine]:
    engine.start(host_bin)
    try:
        yield engine
    finally:
        engine.stop()
