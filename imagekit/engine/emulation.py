"""Which architectures this machine can run: its own, and those the kernel hands to QEMU.

An arm64 image built on an amd64 machine runs every RUN step, every smoke check and the
debootstrap of its base through qemu-user-static, registered in binfmt_misc. The kernel
opens a registration with the F ("fix binary") flag once, so it works inside containers and
chroots that have no QEMU of their own; without F it does not, and the build fails deep in
its first RUN. This module says so before anything starts.
"""

from __future__ import annotations

import platform as _platform
from pathlib import Path

from imagekit.schema import Platform

BINFMT = Path("/proc/sys/fs/binfmt_misc")
_MACHINES: dict[str, Platform] = {"x86_64": "linux/amd64", "amd64": "linux/amd64",
                                  "aarch64": "linux/arm64", "arm64": "linux/arm64"}
_QEMU: dict[Platform, str] = {"linux/amd64": "qemu-x86_64", "linux/arm64": "qemu-aarch64"}


def host_platform(machine: str | None = None) -> Platform:
    """The platform whose programs this machine runs natively."""
    found = (machine or _platform.machine()).lower()
    if found not in _MACHINES:
        raise ValueError(f"imagekit builds for amd64 and arm64; this machine is {found}")
    return _MACHINES[found]


def native(platform: Platform) -> bool:
    return platform == host_platform()


def foreign(architecture: str) -> bool:
    """Whether an image of this architecture (`arm64`, as an image config names it) runs
    here under QEMU rather than natively."""
    return architecture not in ("", host_platform().partition("/")[2])


# What every container of another architecture's image gets here. QEMU 7.2's user-mode
# emulation (bookworm's) hangs in libgomp's thread pool: `import torch` from PyPI's aarch64
# wheel waits forever in a futex (or dies of SIGSEGV) with the default threads, and imports
# in 19 s with one. A check under emulation is about what the image holds, not how fast it
# runs in parallel; on a machine of that architecture nothing is added.
UNDER_QEMU: dict[str, str] = {"OMP_NUM_THREADS": "1"}


def environment(architecture: str) -> dict[str, str]:
    """The variables a container of an image of `architecture` is started with here."""
    return dict(UNDER_QEMU) if foreign(architecture) else {}


def unable(platform: Platform, binfmt: Path = BINFMT, machine: str | None = None) -> str | None:
    """Why this machine cannot run `platform`'s programs, or None when it can."""
    host = host_platform(machine)
    if platform == host:
        return None
    qemu = _QEMU[platform]
    start = (f"this {host.partition('/')[2]} machine runs {platform} programs only through "
             "QEMU, and ")
    if not (binfmt / "status").exists():
        return (start + "binfmt_misc is not mounted (mount -t binfmt_misc binfmt_misc "
                f"{binfmt}; scripts/setup.sh does)")
    entry = binfmt / qemu
    if not entry.exists():
        return (start + f"no {qemu} is registered in binfmt_misc (apt-get install "
                "qemu-user-static binfmt-support; scripts/setup.sh does)")
    lines = entry.read_text().splitlines()
    if not lines or lines[0].strip() != "enabled":
        return start + f"its {qemu} registration is disabled (update-binfmts --enable {qemu})"
    flags = next((line.split(":", 1)[1].strip() for line in lines
                  if line.startswith("flags:")), "")
    if "F" not in flags:
        return (start + f"{qemu} is registered without the F flag, so containers cannot use "
                "it (Debian's qemu-user-static registers it with F)")
    return None
