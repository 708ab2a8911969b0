"""A real Apptainer for the tests: Debian sid's apptainer 1.4.5 in a debootstrapped root.

Bookworm does not package apptainer and sid's needs a newer glibc than the host's, so it runs
inside its own root entered with bubblewrap, as an unprivileged user (apptainer then uses user
namespaces, the way it runs on most HPC systems).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from imagekit.engine.base import debootstrap
from imagekit.errors import BuildFailed
from imagekit.sif import parse_list

ROOT = Path(os.environ.get("IMAGEKIT_APPTAINER_ROOT", "/var/cache/imagekit/apptainer-sid"))
MIRROR = os.environ.get("IMAGEKIT_SID_MIRROR", "http://deb.debian.org/debian")
UID = GID = 2345  # not 1000: the image's own user must not be who runs it
USER = "aptest"
APT = ["-o", "Acquire::Check-Valid-Until=false"]


class Unavailable(Exception):
    """The sid root could not be made here (no mirror, no debootstrap...)."""


def run_or_unavailable(argv: Sequence[str], timeout: float = 1800) -> str:
    """A command that makes or reads a sid root: what it printed; Unavailable when it fails."""
    result = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise Unavailable(f"{' '.join(argv[:4])}...: {result.stderr.strip()[-800:]}")
    return result.stdout


PACKAGES = "apptainer squashfuse fuse2fs cosign"  # cosign: Debian packages it in sid only


def bwrap_root(root: Path) -> list[str]:
    return ["bwrap", "--bind", str(root), "/", "--dev-bind", "/dev", "/dev", "--proc", "/proc",
            "--tmpfs", "/run", "--ro-bind", "/etc/resolv.conf", "/etc/resolv.conf"]


_CLEARED: list[Path] = []


def _clear_cache(root: Path) -> None:
    """The test user's Apptainer cache, once per test session: the root is kept between
    sessions, and the SIFs every session pulls (oras://) piled up there (7.4 GB here)."""
    if root not in _CLEARED:
        shutil.rmtree(root / "home" / USER / ".apptainer" / "cache", ignore_errors=True)
        _CLEARED.append(root)


_MAKING = threading.Lock()


def ensure_root() -> Path:
    """The sid root with apptainer and cosign, made once and kept (a few hundred MB); the
    session starts making it beside the first tests (conftest), and a test that needs it
    first waits for that."""
    with _MAKING:
        return _ensure_root()


def _ensure_root() -> Path:
    if (ROOT / "usr/bin/apptainer").exists():
        _clear_cache(ROOT)
        if not (ROOT / "usr/bin/cosign").exists():  # a root made before cosign was needed
            run_or_unavailable([*bwrap_root(ROOT), "sh", "-c",
                  f"apt-get {' '.join(APT)} update -qq && DEBIAN_FRONTEND=noninteractive "
                  f"apt-get {' '.join(APT)} install -y -qq {PACKAGES}"])
        _add_user(ROOT)
        return ROOT
    make_sid_root(ROOT, f"apt-get {' '.join(APT)} update -qq && DEBIAN_FRONTEND="
                        f"noninteractive apt-get {' '.join(APT)} install -y -qq {PACKAGES}")
    _add_user(ROOT)
    return ROOT


# Debian sid's minbase as debootstrap left it, kept beside the roots made from it (Apptainer's
# and the engines'): each root starts as a copy, so sid is bootstrapped once, not per root.
# sid moves: a minbase older than a week is bootstrapped again, so that a root made from it
# does not meet a transition its old packages cannot follow.
MINBASE = ROOT.with_name("sid-minbase")
MINBASE_DAYS = 7
_MINBASE = threading.Lock()


def _fresh(folder: Path) -> bool:
    marker = folder / "usr/bin/apt-get"
    return marker.exists() and time.time() - folder.stat().st_mtime < MINBASE_DAYS * 86400


def _minbase() -> Path:
    with _MINBASE:
        if not _fresh(MINBASE):
            work = MINBASE.with_name(MINBASE.name + ".partial")
            work.parent.mkdir(parents=True, exist_ok=True)
            try:  # imagekit's own: a download that fails in passing gets two more runs
                debootstrap(work, "sid", MIRROR, ["--variant=minbase"], say=lambda line: None)
            except BuildFailed as failed:
                raise Unavailable(str(failed)[-800:]) from failed
            shutil.rmtree(MINBASE, ignore_errors=True)
            work.rename(MINBASE)
            os.utime(MINBASE)  # its age counts from now
        return MINBASE


def make_sid_root(root: Path, install: str) -> None:
    """Debian sid (minbase) copied beside `root`, `install` (a shell line) run inside it,
    and only then moved to `root`: a root that exists is whole."""
    for tool in ("debootstrap", "bwrap"):
        if shutil.which(tool) is None:
            raise Unavailable(f"{tool} is not installed")
    minbase = _minbase()
    work = root.with_name(root.name + ".partial")
    shutil.rmtree(work, ignore_errors=True)
    work.parent.mkdir(parents=True, exist_ok=True)
    # cp keeps what a root needs and Python's copytree would not: device nodes, hard links.
    # -T: into `work` itself, never into a folder left there.
    run_or_unavailable(["cp", "-a", "-T", str(minbase), str(work)])
    run_or_unavailable([*bwrap_root(work), "sh", "-c", install])
    work.rename(root)


def _add_user(root: Path) -> None:
    add_user(root, USER, UID, GID, f"/home/{USER}")
    home = root / "home" / USER
    home.mkdir(parents=True, exist_ok=True)
    os.chown(home, UID, GID)
    (root / "tmp").chmod(0o1777)
    (root / "srv").mkdir(exist_ok=True)


def add_user(root: Path, name: str, uid: int, gid: int, home: str) -> None:
    """Give the root a passwd and group entry (apptainer copies the caller's into the
    container from there)."""
    passwd = root / "etc/passwd"
    if f"\n{name}:" not in "\n" + passwd.read_text():
        with passwd.open("a") as f:
            f.write(f"{name}:x:{uid}:{gid}::{home}:/bin/bash\n")
    # bubblewrap binds the host home here; it cannot create the mount point itself.
    (root / home.lstrip("/")).mkdir(parents=True, exist_ok=True)
    group = root / "etc/group"
    if f":{gid}:" not in group.read_text():
        with group.open("a") as f:
            f.write(f"{name}:x:{gid}:\n")


_FUSE = threading.Lock()
_FUSE_USERS: list[int] = []  # the mode to give back, while anyone needs it open


@contextlib.contextmanager
def fuse_for_user() -> Iterator[None]:
    """/dev/fuse is 0600 here; apptainer mounts SIFs with squashfuse as the user. Tests and
    setups beside them may need it at once: it is given back when the last one is done."""
    with _FUSE:
        if not _FUSE_USERS:
            mode = os.stat("/dev/fuse").st_mode & 0o777
            os.chmod("/dev/fuse", 0o666)
        else:
            mode = _FUSE_USERS[0]
        _FUSE_USERS.append(mode)
    try:
        yield
    finally:
        with _FUSE:
            _FUSE_USERS.pop()
            if not _FUSE_USERS:
                os.chmod("/dev/fuse", mode)


@dataclass
class Apptainer:
    root: Path
    binds: list[tuple[str, str]] = field(default_factory=list)  # host path -> path in root
    env: dict[str, str] = field(default_factory=dict)

    @property
    def home(self) -> Path:
        return self.root / "home" / USER

    def place(self, host_file: Path, name: str) -> str:
        """Make a host file visible in the root at /srv/NAME (read-only bind)."""
        target = self.root / "srv" / name
        if not target.exists():
            target.touch()
        self.binds.append((str(host_file), f"/srv/{name}"))
        return f"/srv/{name}"

    def argv(self, args: Sequence[str], cwd: str | None = None) -> list[str]:
        words = ["setpriv", "--reuid", str(UID), "--regid", str(GID), "--clear-groups",
                 "bwrap", "--bind", str(self.root), "/", "--dev", "/dev",
                 "--dev-bind", "/dev/fuse", "/dev/fuse", "--proc", "/proc",
                 "--ro-bind", "/sys", "/sys", "--tmpfs", "/run",
                 "--setenv", "HOME", f"/home/{USER}", "--setenv", "USER", USER,
                 "--setenv", "PATH", "/usr/local/bin:/usr/bin:/bin"]
        for host, inside in self.binds:
            words += ["--ro-bind", host, inside]
        for key, value in self.env.items():
            words += ["--setenv", key, value]
        words += ["--chdir", cwd or f"/home/{USER}"]
        return [*words, *args]

    def run(self, *args: str, timeout: float = 600, cwd: str | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(self.argv(args, cwd), capture_output=True, text=True,
                                timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(args)} exited {result.returncode}\n"
                                 f"stdout:\n{result.stdout[-3000:]}\n"
                                 f"stderr:\n{result.stderr[-3000:]}")
        return result

    def start(self, *args: str, cwd: str | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen(self.argv(args, cwd), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)


def host_tools(root: Path, folder: Path) -> Path:
    """A folder to put first on PATH: `cosign` (sid's build runs on the host as it is) and
    `apptainer`, which runs the sid root's real apptainer as the caller, with the host's
    /tmp and working directory bound in at the same paths (what `imagekit` signs and
    verifies lives there)."""
    folder.mkdir(parents=True, exist_ok=True)
    cosign = folder / "cosign"
    if not cosign.exists():
        cosign.symlink_to(root / "usr/bin/cosign")
    wrapper = folder / "apptainer"
    wrapper.write_text(
        "#!/bin/sh\n"
        f'exec bwrap --bind {root} / --dev-bind /dev /dev --proc /proc --tmpfs /run '
        '--bind /tmp /tmp --bind "$PWD" "$PWD" --chdir "$PWD" '
        '--setenv PATH /usr/bin:/bin -- /usr/bin/apptainer "$@"\n')
    wrapper.chmod(0o755)
    return folder


def site_keys(folder: Path, tools: Path) -> tuple[dict[str, str], Path, Path]:
    """The site's keys, made in `folder` with the cosign of `tools` (host_tools): a cosign
    pair (with a password) and an OpenPGP key for SIFs; the environment imagekit signs
    with, and the two public keys."""
    password = "site-cosign-password"
    subprocess.run([str(tools / "cosign"), "generate-key-pair"], cwd=folder, check=True,
                   capture_output=True, env={**os.environ, "COSIGN_PASSWORD": password})
    gnupg = folder / "gnupg"
    gnupg.mkdir(mode=0o700)
    gpg = ["gpg", "--homedir", str(gnupg), "--batch"]
    subprocess.run([*gpg, "--passphrase", "", "--quick-gen-key",
                    "imagekit test site <sif-signing@example.org>", "rsa3072", "sign",
                    "never"], check=True, capture_output=True)
    secret = subprocess.run([*gpg, "--armor", "--export-secret-keys"], check=True,
                            capture_output=True).stdout
    public = subprocess.run([*gpg, "--armor", "--export"], check=True,
                            capture_output=True).stdout
    (folder / "sif-signing.asc").write_bytes(secret)
    (folder / "sif-signing.pub.asc").write_bytes(public)
    env = {"IMAGEKIT_COSIGN_KEY": str(folder / "cosign.key"),
           "IMAGEKIT_COSIGN_PASSWORD": password,
           "IMAGEKIT_SIF_SIGNING_KEY": str(folder / "sif-signing.asc")}
    return env, folder / "cosign.pub", folder / "sif-signing.pub.asc"


def system_partition(sif: Path, tmp_path: Path) -> Path:
    """The SIF's primary system partition (its squashfs), copied out into `tmp_path`."""
    listing = subprocess.run(["siftool", "list", str(sif)], capture_output=True, text=True,
                             check=True).stdout
    fs = next(o for o in parse_list(listing) if o.kind.startswith("FS"))
    out = tmp_path / "rootfs.sqfs"
    with sif.open("rb") as src, out.open("wb") as dst:
        src.seek(fs.start)
        remaining = fs.end - fs.start
        while remaining:
            block = src.read(min(remaining, 1 << 20))
            dst.write(block)
            remaining -= len(block)
    return out
