"""scripts/setup.sh on a fresh Debian machine of each suite a site runs: the packages it
installs resolve against bookworm's, trixie's and sid's own indexes (Debian's mirror, read
into a temporary apt state: the host's own apt state and packages are left alone), with the
Docker engine each suite carries and, past bookworm's 20.10, the buildx plugin its client
needs for BuildKit."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.integration.conftest import ROOT

pytestmark = pytest.mark.integration

MIRROR = "http://deb.debian.org/debian"
SUITES = ("bookworm", "trixie", "sid")


def packages(suite: str) -> list[str]:
    listed = subprocess.run([str(ROOT / "scripts/setup.sh"), "--packages", suite],
                            capture_output=True, text=True, check=True, timeout=60)
    return listed.stdout.split()


def _apt(state: Path) -> list[str]:
    """apt-get in a state of its own: its sources, lists, cache, and an empty dpkg status,
    as on a machine where nothing is installed yet."""
    return ["apt-get", "-o", f"Dir::Etc::SourceList={state / 'sources.list'}",
            "-o", "Dir::Etc::SourceParts=/nonexistent", "-o", f"Dir::State={state / 'state'}",
            "-o", f"Dir::State::status={state / 'status'}", "-o", f"Dir::Cache={state / 'cache'}",
            "-o", "Debug::NoLocking=true", "-o", "APT::Get::List-Cleanup=false",
            # The temporary state is root's, out of the _apt user's reach.
            "-o", "APT::Sandbox::User=root"]


def simulate(suite: str, names: list[str], state: Path) -> str:
    for part in ("state/lists/partial", "cache/archives/partial"):
        (state / part).mkdir(parents=True)
    (state / "status").write_text("")
    (state / "sources.list").write_text(
        f"deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] {MIRROR} {suite} "
        "main\n")
    apt = _apt(state)
    update = subprocess.run([*apt, "update", "-q"], capture_output=True, text=True,
                            timeout=900, check=False)
    assert update.returncode == 0 and "W: " not in update.stderr, update.stderr[-2000:]
    install = subprocess.run([*apt, "install", "--simulate", "--no-install-recommends", *names],
                             capture_output=True, text=True, timeout=300, check=False)
    assert install.returncode == 0, f"{suite}: {install.stdout[-3000:]}{install.stderr[-2000:]}"
    return install.stdout


@pytest.mark.parametrize("suite", SUITES)
def test_setup_packages_resolve_on_each_suite(suite: str, tmp_path: Path) -> None:
    names = packages(suite)
    out = simulate(suite, names, tmp_path)
    installed = {line.split()[1] for line in out.splitlines() if line.startswith("Inst ")}
    missing = sorted(set(names) - installed)
    assert not missing, f"{suite}: asked for but not installed: {missing}"
    # The engine a site gets there, and BuildKit with it.
    assert ("docker-buildx" in names) is (suite != "bookworm")
    docker = next(line for line in out.splitlines() if line.startswith("Inst docker.io "))
    version = docker.split("(", 1)[1].split()[0]
    assert int(version.split(".")[0]) >= (20 if suite == "bookworm" else 26), docker
