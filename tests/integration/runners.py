"""CI runners for the tests: each one a Docker engine of its own on this machine.

Every runner is a real `dockerd` with its own data root, exec root (and so its own
containerd), socket and bridge, started empty: what a fresh CI runner has. Its bridge is
masqueraded by hand (`--iptables=false`, so that it leaves the main engine's rules alone)
for the builds' network access; it reaches the registry on loopback from the daemon itself.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker

from tests.integration import suite
from tests.integration.conftest import load_base, main_base


def _ip(*argv: str, check: bool = True) -> None:
    subprocess.run(argv, check=check, capture_output=True, text=True, timeout=30)


def bridge_rules(bridge: str, net: str, verb: str) -> list[list[str]]:
    """What an engine's own bridge needs from iptables, added (-I) or taken back (-D): its
    subnet masqueraded on the way out, and forwarding both ways (dockerd's FORWARD drops the
    rest)."""
    # -w: dockerd and Podman edit the tables too, beside the suite (wait for the lock).
    iptables = ["iptables", "-w", "60"]
    return [
        [*iptables, "-t", "nat", verb, "POSTROUTING", "-s", net, "!", "-o", bridge,
         "-j", "MASQUERADE"],
        [*iptables, verb, "FORWARD", "-i", bridge, "-j", "ACCEPT"],
        [*iptables, verb, "FORWARD", "-o", bridge, "-j", "ACCEPT"],
    ]


@dataclass
class Runner:
    name: str
    folder: Path
    subnet: int  # 172.30.<subnet>.0/24
    process: subprocess.Popen[bytes] | None = None
    client: Any = None
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def socket(self) -> Path:
        return self.folder / "docker.sock"

    @property
    def bridge(self) -> str:
        return f"br-ikrun-{self.name}"  # br-: left out of bench.host.rx_bytes like dockerd's

    @property
    def env(self) -> dict[str, str]:
        """The environment a command on this runner runs with (subnet 0: the tests' own
        engine, started by `make test`)."""
        return {"DOCKER_HOST": f"unix://{self.socket}"} if self.subnet else {}

    def _rules(self, verb: str) -> list[list[str]]:
        return bridge_rules(self.bridge, f"172.30.{self.subnet}.0/24", verb)

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        _ip("ip", "link", "add", self.bridge, "type", "bridge")
        _ip("ip", "addr", "add", f"172.30.{self.subnet}.1/24", "dev", self.bridge)
        _ip("ip", "link", "set", self.bridge, "up")
        for rule in self._rules("-I"):
            _ip(*rule)
        log = (self.folder / "dockerd.log").open("wb")
        self.process = subprocess.Popen(
            ["dockerd", "--data-root", str(self.folder / "data"),
             "--exec-root", str(self.folder / "exec"), "--pidfile",
             str(self.folder / "dockerd.pid"), "--host", f"unix://{self.socket}",
             "--bridge", self.bridge, "--iptables=false", "--ip-masq=false"],
            stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            with contextlib.suppress(docker.errors.DockerException):
                self.client = docker.DockerClient(base_url=f"unix://{self.socket}",
                                                  timeout=900)
                self.client.ping()
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.5)
        raise AssertionError(f"runner {self.name}'s dockerd did not come up:\n"
                             + (self.folder / "dockerd.log").read_text()[-3000:])

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for rule in self._rules("-D"):
            _ip(*rule, check=False)
        _ip("ip", "link", "delete", self.bridge, check=False)
        # Overlay mounts of a stopped engine's containers are gone with it; its files go too.
        subprocess.run(["umount", "-R", str(self.folder / "exec")], capture_output=True,
                       check=False)
        shutil.rmtree(self.folder, ignore_errors=True)

    def images(self) -> dict[str, str]:
        """Every tag this engine holds -> image ID."""
        return {tag: image.id for image in self.client.images.list() for tag in image.tags}


def mirror_base(address: str) -> str:
    """The site's Debian base in its registry, as a site keeps it for its CI runners (the
    suite bootstraps it once, in its own engine; bootstrapping is test_build's subject): an
    empty runner pulls it instead of running debootstrap again."""
    mirrored = f"{address}/mirror/debian:bookworm"
    for argv in (["docker", "tag", main_base(), mirrored], ["docker", "push", mirrored]):
        subprocess.run(argv, check=True, capture_output=True, timeout=600)
    return mirrored


def checkout(folder: Path, namespace: str, base: str) -> Path:
    """A runner's (or another engine's) checkout of the catalog, publishing under its own
    namespace to the registry that holds the site's base, which it builds on."""
    catalog = suite.copy_project(folder, namespace, registry=base.split("/")[0],
                                 quick_sifs=True)
    text = catalog.read_text()
    assert "  image: imagekit/debian:bookworm\n" in text
    catalog.write_text(text.replace("  image: imagekit/debian:bookworm\n", f"  image: {base}\n"))
    return catalog


def own_engine(name: str, folder: Path, subnet: int) -> Runner | None:
    """A setup's own empty dockerd, started and holding the suite's one base; None when the
    suite runs under Podman, whose engine has no daemon (a setup's builds there are its own
    processes, at its own priority)."""
    if os.environ.get("IMAGEKIT_ENGINE") == "podman":
        return None
    engine = Runner(name, folder, subnet)
    try:
        engine.start()
        load_base(["docker", "load"], engine.env)
    except BaseException:
        engine.stop()
        raise
    return engine


TIMES: dict[str, float] = {}  # step -> seconds, for the session's summary


def summary(write: Callable[[str], None]) -> None:
    """The wall times of the two runners and of the single engine, side by side."""
    for step, seconds in TIMES.items():
        write(f"{step}: {seconds}")
    two = sum(s for k, s in TIMES.items() if k.startswith(("a:", "b:"))
              and "unchanged" not in k and "--force" not in k)
    if two:
        write(f"two empty runners, one after the other: {two:.1f} s")
