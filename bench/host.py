"""What the benchmarks observe from outside: wall time, bytes received, the engine's CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HPCCM = "imagekit-bench/hpccm:latest"
HAND = "imagekit-bench/hand:latest"
HAND_AND_HPCCM = (HPCCM, HAND)


class BenchError(Exception):
    """A measurement could not be taken (a build failed, a server never answered)."""


def docker_cli() -> str:
    # Debian's docker.io client has BuildKit built in; another docker on PATH may not.
    for candidate in ("/usr/bin/docker", shutil.which("docker")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise BenchError("no docker client: run scripts/setup.sh")


def run(argv: Sequence[str], *, cwd: Path | None = None, env: dict[str, str] | None = None,
        timeout: float = 7200, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                            cwd=cwd or ROOT, env={**os.environ, **(env or {})})
    if check and result.returncode != 0:
        raise BenchError(f"{' '.join(argv[:6])} exited {result.returncode}:\n"
                         f"{result.stdout[-2000:]}\n{result.stderr[-3000:]}")
    return result


def docker(*args: str, check: bool = True, timeout: float = 7200,
           env: dict[str, str] | None = None, cwd: Path | None = None) -> str:
    return run([docker_cli(), *args], check=check, timeout=timeout, env=env, cwd=cwd).stdout


def imagekit(catalog: Path, *args: str, timeout: float = 7200) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "-m", "imagekit", *args, "--catalog", str(catalog)],
               timeout=timeout, env={"COLUMNS": "200"})


def rx_bytes() -> int:
    """Bytes the machine has received from outside (every interface but loopback and the
    engine's own bridges): what builds downloaded, read as the kernel counts it."""
    total = 0
    for line in Path("/proc/net/dev").read_text().splitlines()[2:]:
        name, _, counters = line.partition(":")
        name = name.strip()
        if name == "lo" or name.startswith(("docker", "veth", "br-", "ifb")):
            continue
        total += int(counters.split()[0])
    return total


class Watch:
    """Wall time and bytes received between start and stop."""

    def __enter__(self) -> Watch:
        self.bytes_in = rx_bytes()
        self.started = time.monotonic()
        self.seconds = 0.0
        self.downloaded = 0
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.monotonic() - self.started
        self.downloaded = rx_bytes() - self.bytes_in


def image_id(ref: str) -> str:
    return docker("image", "inspect", "-f", "{{.Id}}", ref, check=False).strip()


def image_size(ref: str) -> int:
    return int(docker("image", "inspect", "-f", "{{.Size}}", ref).strip())


def layers(ref: str) -> list[str]:
    return docker("image", "inspect", "-f", "{{range .RootFS.Layers}}{{.}} {{end}}",
                  ref).split()


def remove_images(*refs: str) -> None:
    present = [r for r in refs if image_id(r)]
    if present:
        docker("image", "rm", "-f", *present, check=False)


def prune_build_cache() -> None:
    """A cold engine for the next build: no BuildKit cache (the base image stays)."""
    docker("builder", "prune", "-af", check=False)


def machine() -> dict[str, str]:
    cpu = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.partition(":")[2].strip()
            break
    mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    engine = docker("version", "-f", "{{.Server.Version}}", check=False).strip()
    return {"cpu": cpu, "cores": str(os.cpu_count()), "memory": f"{mem_kb / 2**20:.0f} GiB",
            "kernel": os.uname().release, "engine": f"dockerd {engine}",
            "python": sys.version.split()[0]}
