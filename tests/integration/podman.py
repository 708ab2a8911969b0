"""Podman for the tests: rootful as this (root) process, rootless as a user of its own.

The rootless user is what a login node has: an account with an /etc/subuid range, no root,
no daemon. Podman 4.3 picks the vfs storage driver for it here (a copy of every layer);
this kernel mounts overlay in a user namespace, so the user's storage.conf asks for overlay
as a site would. imagekit runs as that user from this checkout with this Python, whose home
(/root) the user may only cross, not read, while the tests run.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.integration.conftest import ROOT

NAME = "imagekit-rootless"
TIMES: dict[str, float] = {}  # step -> seconds, for the session's summary
SUBIDS = "400000-465535"


def podman(*args: str, check: bool = True, timeout: float = 600,
           env: dict[str, str] | None = None) -> str:
    result = subprocess.run(["podman", *args], capture_output=True, text=True,
                            timeout=timeout, check=False, env={**os.environ, **(env or {})})
    if check and result.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)}: {result.stderr[-2000:]}")
    return result.stdout


def inspect(ref: str, runner: Rootless | None = None) -> dict[str, Any]:
    argv = ("image", "inspect", ref)
    out = runner.podman(*argv) if runner else podman(*argv)
    found: list[dict[str, Any]] = json.loads(out)
    return found[0]


@dataclass
class Rootless:
    uid: int
    gid: int
    home: Path
    work: Path  # the user's checkout of the catalog

    @property
    def env(self) -> dict[str, str]:
        return {"HOME": str(self.home), "USER": NAME, "LOGNAME": NAME,
                "XDG_RUNTIME_DIR": f"/run/user/{self.uid}", "LANG": "C.UTF-8",
                "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "COLUMNS": "200",
                "PYTHONUNBUFFERED": "1"}

    def run(self, *argv: str, timeout: float = 3000,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--init-groups",
             *argv], capture_output=True, text=True, timeout=timeout, cwd=self.work,
            env=self.env, check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} as {NAME} exited {result.returncode}\n"
                                 f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        return result

    def imagekit(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run(sys.executable, "-m", "imagekit", *args, "--catalog",
                        str(self.work / "catalog.yaml"), check=check)

    def podman(self, *args: str) -> str:
        return self.run("podman", *args, timeout=600).stdout


def _user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(NAME)
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", NAME], check=True)
        return pwd.getpwnam(NAME)


@contextlib.contextmanager
def rootless_user(catalog_files: list[tuple[str, str]]) -> Iterator[Rootless]:
    """The user, its subordinate ids, runtime folder, storage.conf and a checkout of the
    catalog (name, text pairs written under stacks/, profiles/ and the catalog file)."""
    account = _user()
    for kind in ("subuid", "subgid"):
        if NAME not in Path(f"/etc/{kind}").read_text():
            flag = "--add-subuids" if kind == "subuid" else "--add-subgids"
            subprocess.run(["usermod", flag, SUBIDS, NAME], check=True)
    home = Path(account.pw_dir)
    runtime = Path(f"/run/user/{account.pw_uid}")
    runtime.mkdir(parents=True, exist_ok=True)
    os.chown(runtime, account.pw_uid, account.pw_gid)
    runtime.chmod(0o700)
    config = home / ".config/containers"
    config.mkdir(parents=True, exist_ok=True)
    (config / "storage.conf").write_text('[storage]\ndriver = "overlay"\n')
    work = Path("/var/tmp") / f"{NAME}-work"
    shutil.rmtree(work, ignore_errors=True)
    for name in ("stacks", "profiles"):
        shutil.copytree(ROOT / name, work / name)
    for name, text in catalog_files:
        (work / name).write_text(text)
    for path in (home / ".config", work):
        subprocess.run(["chown", "-R", f"{account.pw_uid}:{account.pw_gid}", str(path)],
                       check=True)
    # The interpreter lives under root's home: let the user cross it (not list it).
    crossed = [p for p in Path(sys.executable).parents
               if p.is_dir() and not p.stat().st_mode & stat.S_IXOTH]
    modes = {p: p.stat().st_mode for p in crossed}
    for path in crossed:
        path.chmod(modes[path] | stat.S_IXOTH)
    user = Rootless(account.pw_uid, account.pw_gid, home, work)
    try:
        # The user starts as a new one: a run stopped before its teardown left its store
        # (a base found "present" is not a bootstrap) and its build cache behind.
        _forget(user)
        yield user
    finally:
        for path, mode in modes.items():
            path.chmod(stat.S_IMODE(mode))
        # Everything the user's Podman holds goes (its layers are the disk's largest here).
        _forget(user)
        shutil.rmtree(work, ignore_errors=True)


def _forget(user: Rootless) -> None:
    """The user's Podman store, its services and imagekit's build cache, gone."""
    subprocess.run(["pkill", "-u", str(user.uid), "-f", "podman"], check=False)
    user.run("podman", "system", "reset", "--force", check=False, timeout=600)
    for path in (user.home / ".local/share/containers", user.home / ".cache/imagekit",
                 user.home / ".cache/containers"):
        shutil.rmtree(path, ignore_errors=True)
