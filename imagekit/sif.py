"""Docker image -> SIF, the single-file image Apptainer and SingularityCE run.

With `apptainer` or `singularity` on PATH, their own `build ... docker-daemon://REF` is used.
Otherwise the SIF is assembled natively the way `apptainer build` lays it out:

1. export the image's filesystem and add what Singularity's runtime reads:
   `/.singularity.d/` (env scripts from the image's ENV, runscript and startscript from its
   command, the %test checks, labels.json) and the mount points it binds onto;
2. make a squashfs of it, compressed as the catalog's `sif:` says (gzip by default: zstd is
   refused by SingularityCE and Apptainer < 1.4), with every timestamp fixed so that the same
   image gives the same bytes;
3. assemble the SIF with siftool: the definition file (Def.FILE), two JSON objects (labels,
   image config) and the squashfs as the primary system partition, all in group 1.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import Any

from imagekit.attest.signing import sif_key, sign_sif
from imagekit.engine.client import Engine, ImageInfo
from imagekit.errors import BuildFailed, ImagekitError, Problem
from imagekit.files import temporary_beside, write_atomically
from imagekit.model import Catalog, Image, arch
from imagekit.render.singularity import SingularityRenderer
from imagekit.run import run
from imagekit.said import Markup, Rows, Said
from imagekit.schema import SIF_LEVELS, Platform

# gzip level 5 (its default in SIF_LEVELS) in 256 KiB blocks: measured here on scipy's
# 1.17 GB image, 19.5 s and 361.5 MB against 25.5 s and 360.6 MB for level 6 in mksquashfs's
# default 128 KiB blocks, and 358.1 MB for the default level 9 (more than twice as long).
# Larger blocks let a lower level compress as well; 256 KiB keeps a small file's read from
# unpacking much more.
BLOCK_SIZE = "256K"
ARCHES = {"386": 1, "amd64": 2, "arm": 3, "arm64": 4, "ppc64le": 6, "s390x": 11, "riscv64": 12}
MOUNT_POINTS = ("proc", "sys", "dev", "tmp", "var/tmp", "home", "etc", "mnt", "srv",
                "opt", "run", ".singularity.d/libs", ".singularity.d/actions")


@dataclass
class SifResult:
    image: str
    path: str
    method: str  # native / apptainer / singularity
    status: str  # built / cached
    image_id: str
    size: int
    sha256: str
    compression: str = "gzip"  # the squashfs's, with its level: zstd-3
    recipe: str = ""  # hash of the definition file and conversion settings
    signed_by: str = ""  # the fingerprint of the PGP key `apptainer sign` used, if any
    export_s: float = 0.0
    squashfs_s: float = 0.0
    assemble_s: float = 0.0
    total_s: float = 0.0
    platform: str = "linux/amd64"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def sif_path(catalog: Catalog, image: Image, tag: str | None = None,
             platform: Platform | None = None) -> Path:
    """dist/IMAGE_TAG.sif for the catalog's first platform (the one `run-cmd`, `tunnel` and
    the batch scripts name), dist/IMAGE_TAG_ARCH.sif for any other."""
    plain = platform is None or platform == catalog.platforms[0]
    suffix = "" if platform is None or plain else f"_{arch(platform)}"
    return catalog.dist / f"{image.name}_{tag or image.tags[0]}{suffix}.sif"


def runtime_tool() -> str | None:
    for name in ("apptainer", "singularity"):
        if shutil.which(name):
            return name
    return None


def compression(catalog: Catalog, level: int | None = None) -> tuple[str, int]:
    """The SIFs' squashfs compression and its level: `level` (the command line's), else the
    catalog's, else the compression's default."""
    default, highest = SIF_LEVELS[catalog.sif_compression]
    chosen = level or catalog.sif_level or default
    if not 1 <= chosen <= highest:
        raise ImagekitError(f"--sif-level {chosen}: {catalog.sif_compression}'s levels are "
                            f"1-{highest} ({catalog.file.name}: sif.compression)")
    return catalog.sif_compression, chosen


_VERSIONS: dict[str, tuple[str, tuple[int, int]] | None] = {}


def runtime_version(tool: str) -> tuple[str, tuple[int, int]] | None:
    """What `tool --version` says, asked once per process: ("apptainer", (1, 4)); None for
    a build this imagekit does not know."""
    if tool not in _VERSIONS:
        said = run([tool, "--version"], check=False, timeout=60).stdout.decode(errors="replace")
        found = re.search(r"^(\S+) version (\d+)\.(\d+)", said.strip())  # apptainer version 1.4.5
        _VERSIONS[tool] = None if found is None else (
            found.group(1), (int(found.group(2)), int(found.group(3))))
    return _VERSIONS[tool]


def _apptainer_1_4(tool: str) -> bool:
    found = runtime_version(tool)
    return found is not None and found[0] == "apptainer" and found[1] >= (1, 4)


def check_runtime_reads(comp: str, tool: str | None) -> None:
    """A zstd SIF is refused before anything is built when the runtime on PATH, which the
    apptainer method builds with, could not run it: SingularityCE, Apptainer < 1.4. Asked
    once per build, by `build.prepare`."""
    if comp != "zstd" or tool is None:
        return
    found = runtime_version(tool)
    # None: a build this imagekit does not know, and the site knows what its nodes run.
    if found is not None and not _apptainer_1_4(tool):
        name, version = found
        raise ImagekitError(f"sif.compression zstd: {tool} is {name} {version[0]}.{version[1]}"
                            ", which cannot run a zstd SIF (Apptainer >= 1.4 can): use gzip, "
                            "or --sif-method native for nodes that run Apptainer >= 1.4")


def build_sif(catalog: Catalog, engine: Engine, image: Image, *, level: int | None = None,
              force: bool = False, method: str = "auto",
              platform: Platform | None = None) -> SifResult:
    comp, level = compression(catalog, level)
    platform = platform or catalog.platforms[0]
    ref = catalog.ref(image.name, platform=platform)
    info = engine.image(ref)
    if info is None:
        raise ImagekitError(f"{image.name}: {ref} is not built (run `imagekit build "
                            f"{image.name}`)")
    out = sif_path(catalog, image, platform=platform)
    tool = runtime_tool() if method in ("auto", "apptainer") else None
    if method == "apptainer" and tool is None:
        raise ImagekitError("--sif-method apptainer: neither apptainer nor singularity is on PATH")
    # Both methods build from, and embed, the definition of what the SIF really is: the
    # built image plus imagekit's runscript, startscript, %test, help and labels.
    deffile = SingularityRenderer(converted_from=ref, converted_id=info.id).render(
        catalog, image)["Singularity.def"]
    # What makes the squashfs, and how: a change of either converts again. Apptainer >= 1.4
    # gets the catalog's compression, level and block size through `--mksquashfs-args`, as
    # the native method uses them: left to itself it compresses with gzip at level 9, more
    # than three times the CPU of level 5 for a squashfs 2.4 % smaller (docs/admin.md).
    # SingularityCE and older Apptainers have no such option: their gzip is their own (a
    # zstd SIF never reaches them, check_runtime_reads).
    squash_args: list[str] = []
    if tool is not None and (comp != "gzip" or _apptainer_1_4(tool)):
        squash_args = ["-comp", comp, "-Xcompression-level", str(level), "-b", BLOCK_SIZE]
    if tool is None:
        how = f"native {comp}-{level}"
    else:
        how = f"{tool} {comp}-{level} {BLOCK_SIZE}" if squash_args else tool
    signing_key = sif_key()
    # A new signing key signs again; the key itself reaches no file, only a digest of it.
    signer = hashlib.sha256(signing_key.read_bytes()).hexdigest() if signing_key else ""
    recipe = hashlib.sha256(f"{deffile}\0{how}\0{SBOM_OBJECT}\0{signer}".encode()).hexdigest()
    previous = None if force else _current(out, info.id, recipe)
    if previous is not None:
        return previous
    out.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    # One name per conversion: two of the same image at once never write the same file.
    partial = temporary_beside(out)
    try:
        if tool is not None:
            with tempfile.TemporaryDirectory(prefix="imagekit-def-") as tmp:
                definition = Path(tmp) / "Singularity.def"
                # The engine says how Apptainer reaches the image: Docker's daemon, or an
                # archive Podman saved.
                bootstrap, source = engine.apptainer_source(ref, Path(tmp))
                if source != ref:
                    deffile = SingularityRenderer(
                        bootstrap=bootstrap, converted_from=source, converted_id=info.id,
                    ).render(catalog, image)["Singularity.def"]
                definition.write_text(deffile)
                # --notest: %test runs where users run it (`apptainer test`, unprivileged),
                # not as the builder's root with /root as HOME; `imagekit test` checks the
                # image itself before anything is published.
                extra = ["--mksquashfs-args", " ".join(squash_args)] if squash_args else []
                # --disable-cache: left to itself, apptainer copies every layer it reads
                # from the engine into the user's cache (~/.apptainer/cache/blob) and keeps
                # it there for good, gigabytes per image that no later conversion reads
                # (each comes from a new image); this way its copy is temporary.
                run([tool, "build", "--notest", "--force", "--disable-cache", *extra,
                     str(partial), str(definition)], timeout=3600)
            result = SifResult(image.name, str(out), tool, "built", info.id, 0, "",
                               compression=f"{comp}-{level}" if squash_args else "gzip",
                               platform=platform)
        else:
            result = _native(engine, image, info, deffile, partial, comp, level)
            result.platform = platform
        add_sbom(partial, image_sbom(catalog, engine, image, info))
        if signing_key is not None:
            result.signed_by = sign_sif(partial, signing_key)
        partial.replace(out)  # a failed conversion leaves the previous SIF in place
        result.path = str(out)
        result.recipe = recipe
        result.total_s = round(time.monotonic() - started, 1)
        result.size = out.stat().st_size
        result.sha256 = sha256_file(out)
        write_atomically(out.with_suffix(".sif.json"),
                         json.dumps(result.as_dict(), indent=2) + "\n")
    except OSError as exc:  # a full disk, a vanished directory
        raise BuildFailed(f"{image.name}: writing {out}: {exc.strerror or exc}") from None
    finally:
        partial.unlink(missing_ok=True)
    return result


_RECORD_KEYS = frozenset(f.name for f in fields(SifResult))
_RECORD_NEEDS = frozenset(f.name for f in fields(SifResult) if f.default is MISSING)


def _current(out: Path, image_id: str, recipe: str) -> SifResult | None:
    """The SIF already at `out`, when its record says it was made from this image by this
    recipe (and its size still matches); None: make it."""
    previous = read_sidecar(out) if out.is_file() else None
    if previous is None or not _RECORD_NEEDS <= set(previous) <= _RECORD_KEYS:
        return None  # none, or another imagekit's record (a key this one does not know)
    if (previous.get("image_id") != image_id or previous.get("recipe") != recipe
            or previous.get("size") != out.stat().st_size):
        return None
    return SifResult(**{**previous, "status": "cached"})


def read_sidecar(sif: Path) -> dict[str, Any] | None:
    """What the conversion recorded beside a SIF (its image ID, sizes, timings), if readable."""
    try:
        found = json.loads(sif.with_suffix(".sif.json").read_text())
    except (OSError, ValueError):
        return None  # missing or damaged: the SIF is made again
    return found if isinstance(found, dict) else None


def _native(engine: Engine, image: Image, info: ImageInfo, deffile: str, out: Path,
            comp: str, level: int) -> SifResult:
    for tool in ("mksquashfs", "siftool"):
        if shutil.which(tool) is None:
            raise ImagekitError(f"{tool} is not installed (apt-get install "
                                f"{'squashfs-tools' if tool == 'mksquashfs' else tool})")
    with tempfile.TemporaryDirectory(prefix="imagekit-sif-", dir=_workdir()) as tmp:
        work = Path(tmp)
        t0 = time.monotonic()
        with image_files(engine, info.id, work) as rootfs:
            write_singularity_dir(rootfs, info, deffile)
            t1 = time.monotonic()
            squashfs = work / "rootfs.sqfs"
            make_squashfs(rootfs, squashfs, comp, level, engine.as_root)
            t2 = time.monotonic()
        (work / "Singularity.def").write_text(deffile)
        (work / "labels.json").write_text(json.dumps(labels(info), indent=2, sort_keys=True))
        (work / "config.json").write_text(json.dumps(image_config(info), indent=2,
                                                     sort_keys=True))
        arch = ARCHES.get(info.architecture)
        if arch is None:
            raise ImagekitError(f"{image.name}: architecture {info.architecture!r} has no SIF "
                                "code")
        assemble(out, work / "Singularity.def", work / "labels.json", work / "config.json",
                 squashfs, arch)
        t3 = time.monotonic()
    return SifResult(image.name, str(out), "native", "built", info.id, 0, "",
                     compression=f"{comp}-{level}", export_s=round(t1 - t0, 1),
                     squashfs_s=round(t2 - t1, 1), assemble_s=round(t3 - t2, 1))


def _workdir() -> str | None:
    return os.environ.get("IMAGEKIT_WORKDIR")


@contextlib.contextmanager
def image_files(engine: Engine, image_id: str, work: Path) -> Iterator[Path]:
    """The image's file system as a folder in `work` that the SIF's own files can be added
    to: the engine's layer folders under a writable overlay where it keeps them on this
    machine (nothing is copied; what is added goes to an upper folder of `work`), else its
    export unpacked. Unmounted, or removed, when done, also on an interrupt."""
    rootfs = work / "rootfs"
    rootfs.mkdir()
    with engine.layer_dirs(image_id) as layers:
        mounted = False
        try:
            mounted = layers is not None and _overlay(layers, work, rootfs)
            if mounted:
                yield rootfs
                return
        finally:
            if mounted:
                _unmount(rootfs)
    try:
        export(engine, image_id, rootfs)
        yield rootfs
    finally:
        # Rootless, the image's files belong to the user's subordinate ids: only the
        # user's namespace may remove them.
        run(engine.as_root(["rm", "-rf", str(rootfs)]), timeout=600, check=False)


def _overlay(layers: list[Path], work: Path, at: Path) -> bool:
    """Mount the layers (the top one first) at `at`, writable into folders of `work`;
    False when this machine cannot (no CAP_SYS_ADMIN, a `work` on a file system that cannot
    hold an overlay's upper folder, too many layers for one mount's options)."""
    upper, scratch = work / "overlay-upper", work / "overlay-work"
    options = (f"lowerdir={':'.join(map(str, layers))},upperdir={upper},workdir={scratch}")
    if len(options) > 4000 or any(c in str(p) for p in (*layers, work) for c in ",:="):
        return False
    upper.mkdir()
    scratch.mkdir()
    # util-linux 2.39 and later mount through fsconfig(2), which takes no lowerdir longer
    # than 256 bytes: the classic mount(2) takes a page of options.
    mounted = subprocess.run(["mount", "-t", "overlay", "overlay", "-o", options, str(at)],
                             capture_output=True, timeout=60, check=False,
                             env={**os.environ, "LIBMOUNT_FORCE_MOUNT2": "always"})
    return mounted.returncode == 0


def _unmount(at: Path) -> None:
    if subprocess.run(["umount", str(at)], capture_output=True, timeout=120,
                      check=False).returncode != 0:
        # Still read by a process an interrupt is ending (mksquashfs): detached now, gone
        # once it has ended.
        subprocess.run(["umount", "-l", str(at)], capture_output=True, timeout=120,
                       check=True)


def export(engine: Engine, image_id: str, rootfs: Path) -> None:
    """The image's filesystem, as `docker export` gives it, unpacked into `rootfs`."""
    # tar's warnings go to a file, not a pipe nobody reads while the export is written:
    # more than a pipe's worth would block tar, and then the export, for ever.
    with engine.export(image_id) as chunks, tempfile.TemporaryFile() as warnings:
        # Owners as the image has them (as root, or in rootless Podman's user namespace).
        tar = subprocess.Popen(engine.as_root(["tar", "-x", "-p", "--numeric-owner", "-C",
                                               str(rootfs)]),
                               stdin=subprocess.PIPE, stderr=warnings)
        assert tar.stdin is not None
        try:
            for chunk in chunks:
                tar.stdin.write(chunk)
        except BrokenPipeError:
            pass  # tar stopped reading: its status and its words say why
        finally:
            with contextlib.suppress(BrokenPipeError):
                tar.stdin.close()
        if tar.wait() != 0:
            warnings.seek(0)
            said = warnings.read().decode(errors="replace").strip()
            raise BuildFailed(f"unpacking the export of {image_id} failed: {said[-500:]}")
    with contextlib.suppress(FileNotFoundError):
        (rootfs / ".dockerenv").unlink()


def _env_line(entry: str) -> str:
    key, _, value = entry.partition("=")
    escaped = (value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
               .replace("`", "\\`"))
    if key == "PATH":
        # As apptainer does: the image's PATH wins over the host's.
        return f'export PATH="{escaped}"'
    return f'export {key}="${{{key}:-"{escaped}"}}"'


def write_singularity_dir(rootfs: Path, info: ImageInfo, deffile: str) -> None:
    sd = rootfs / ".singularity.d"
    (sd / "env").mkdir(parents=True, exist_ok=True)
    for point in MOUNT_POINTS:
        (rootfs / point).mkdir(parents=True, exist_ok=True)
    (rootfs / "tmp").chmod(0o1777)
    (rootfs / "var/tmp").chmod(0o1777)
    for name in ("etc/hosts", "etc/resolv.conf"):
        target = rootfs / name
        if target.is_symlink() or target.exists():
            target.unlink()
        target.write_text("")
    env = ["#!/bin/sh", "# from the Docker image's ENV (docker2singularity semantics)"]
    env += [_env_line(e) for e in info.env if "=" in e]
    _write(sd / "env/10-docker2singularity.sh", "\n".join(env) + "\n", 0o755)
    _write(sd / "env/90-environment.sh",
           "#!/bin/sh\n# Custom environment shell code should follow\n\n", 0o755)
    _write(sd / "env/99-base.sh", (
        "#!/bin/sh\n"
        'if [ -z "${LD_LIBRARY_PATH:-}" ]; then\n'
        '    LD_LIBRARY_PATH="/.singularity.d/libs"\n'
        "else\n"
        '    LD_LIBRARY_PATH="$LD_LIBRARY_PATH:/.singularity.d/libs"\n'
        "fi\n"
        'PS1="Apptainer> "\n'
        "export LD_LIBRARY_PATH PS1\n"
    ), 0o755)
    _write(sd / "runscript", "#!/bin/sh\n" + _section(deffile, "runscript") + "\n", 0o755)
    _write(sd / "startscript", "#!/bin/sh\n" + _section(deffile, "startscript") + "\n", 0o755)
    _write(sd / "test", "#!/bin/sh\n" + _section(deffile, "test") + "\n", 0o755)
    # What `apptainer run-help` prints: %help as written, as `apptainer build` stores it.
    _write(sd / "runscript.help", _section(deffile, "help", dedent=False) + "\n\n", 0o644)
    _write(sd / "labels.json", json.dumps(labels(info), indent=4, sort_keys=True) + "\n", 0o644)
    _write(sd / "Singularity", deffile, 0o644)
    for link in ("singularity", "runscript"):
        target = rootfs / link
        if not target.exists() and not target.is_symlink():
            target.symlink_to(".singularity.d/runscript")
    env_link = rootfs / "environment"
    if not env_link.exists() and not env_link.is_symlink():
        env_link.symlink_to(".singularity.d/env/90-environment.sh")


def _write(path: Path, text: str, mode: int) -> None:
    path.write_text(text)
    path.chmod(mode)


def _section(deffile: str, name: str, dedent: bool = True) -> str:
    """The body of a %section of the rendered definition (dedented unless told)."""
    lines = deffile.splitlines()
    try:
        start = lines.index(f"%{name}") + 1
    except ValueError:
        return ""
    body = []
    for line in lines[start:]:
        if line.startswith("%"):
            break
        body.append(line[4:] if dedent and line.startswith("    ") else line)
    return "\n".join(body).strip("\n")


def labels(info: ImageInfo) -> dict[str, str]:
    out = dict(info.labels)
    out["io.imagekit.image-id"] = info.id
    return out


def image_config(info: ImageInfo) -> dict[str, Any]:
    return {"architecture": info.architecture, "config": {
        "Env": list(info.env), "Entrypoint": list(info.entrypoint), "Cmd": list(info.cmd),
        "Labels": dict(info.labels)}}


def make_squashfs(rootfs: Path, out: Path, comp: str, level: int,
                  as_root: Callable[[list[str]], list[str]] = lambda argv: argv) -> None:
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "0")
    # mksquashfs >= 4.5 refuses SOURCE_DATE_EPOCH next to -all-time/-mkfs-time; the options
    # carry its value, and older versions understand only them.
    env = {k: v for k, v in os.environ.items() if k != "SOURCE_DATE_EPOCH"}
    # -exit-on-error: a file it cannot read fails the SIF (mksquashfs would store it empty
    # and exit 0). -no-xattrs: the image's files as an export unpacked by tar gives them,
    # whichever way the conversion reads them (Apptainer mounts the SIF nosuid anyway).
    run(as_root(["mksquashfs", str(rootfs), str(out), "-noappend", "-comp", comp,
                 "-Xcompression-level", str(level), "-b", BLOCK_SIZE, "-all-time", epoch,
                 "-mkfs-time", epoch, "-no-xattrs", "-exit-on-error", "-no-progress",
                 "-quiet"]), env=env, timeout=3600)


LAUNCH = b"#!/usr/bin/env run-singularity\n"
SBOM_OBJECT = "sbom.cdx.json"  # the SIF SBOM object's file name


def assemble(out: Path, deffile: Path, labels_json: Path, config_json: Path, squashfs: Path,
             arch: int) -> None:
    run(["siftool", "new", str(out)])
    # The first 32 bytes of the global header are the launch script that makes a SIF
    # executable (`./x.sif`); siftool leaves it empty, apptainer writes this one.
    with out.open("r+b") as f:
        f.write(LAUNCH.ljust(32, b"\0"))
    run(["siftool", "add", "--datatype", "1", "--groupid", "1", "--filename",
         "Singularity.def", str(out), str(deffile)])
    run(["siftool", "add", "--datatype", "6", "--groupid", "1", "--filename", "labels.json",
         str(out), str(labels_json)])
    run(["siftool", "add", "--datatype", "6", "--groupid", "1", "--filename", "config.json",
         str(out), str(config_json)])
    run(["siftool", "add", "--datatype", "4", "--parttype", "2", "--partfs", "1",
         "--partarch", str(arch), "--groupid", "1", str(out), str(squashfs)], timeout=600)


def image_sbom(catalog: Catalog, engine: Engine, image: Image, info: ImageInfo) -> str:
    """The image's SBOM, from the packages read out of the image itself."""
    from imagekit.attest.packages import read_packages
    from imagekit.attest.sbom import make_sbom

    packages = read_packages(engine, info.id, image.runtime.venv)
    return make_sbom(image.name, info.id, catalog.repository(image.name), packages,
                     architecture=info.architecture,
                     created=info.labels.get("org.opencontainers.image.created", ""))


def add_sbom(sif: Path, sbom: str) -> None:
    """The SBOM as the SIF's own SBOM object (SIF data type 9, CycloneDX JSON), in the
    image's object group, which `apptainer sign` signs with the rest."""
    from imagekit.attest.sbom import SIF_FORMAT

    with tempfile.TemporaryDirectory(prefix="imagekit-sbom-") as tmp:
        path = Path(tmp) / SBOM_OBJECT
        path.write_text(sbom)
        run(["siftool", "add", "--datatype", "9", "--sbomformat", SIF_FORMAT, "--groupid",
             "1", "--filename", SBOM_OBJECT, str(sif), str(path)])


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class SifObject:
    id: int
    group: str
    kind: str
    start: int
    end: int


def inspect(path: Path) -> dict[str, Any]:
    """Header, objects, labels and definition file of a SIF, read with siftool."""
    if not path.is_file():
        raise ImagekitError(f"{path}: no such file")
    header = run(["siftool", "header", str(path)]).stdout.decode()
    listing = run(["siftool", "list", str(path)]).stdout.decode()
    objects = parse_list(listing)
    deffile, found_labels = "", {}
    for obj in objects:
        data = run(["siftool", "dump", str(obj.id), str(path)]).stdout
        if obj.kind == "Def.FILE":
            deffile = data.decode(errors="replace")
        elif obj.kind == "JSON.Generic":
            try:
                parsed = json.loads(data)
            except ValueError:
                continue
            if isinstance(parsed, dict) and "config" not in parsed:
                found_labels = parsed
    with path.open("rb") as f:
        launch = f.read(32).split(b"\0")[0].decode(errors="replace").strip()
    return {"launch": launch, "header": header.strip(), "objects": [asdict(o) for o in objects],
            "labels": found_labels, "deffile": deffile}


def parse_list(listing: str) -> list[SifObject]:
    objects = []
    for line in listing.splitlines():
        cells = [c.strip() for c in line.split("|")]
        if len(cells) < 5 or not cells[0].isdigit():
            continue
        start, _, end = cells[3].partition("-")
        objects.append(SifObject(int(cells[0]), cells[1], cells[4], int(start), int(end)))
    return objects


def inspect_file(path: Path) -> dict[str, Any]:
    """`imagekit inspect`: a SIF's header, objects, labels and definition; anything that is
    not a readable SIF is bad input."""
    if not path.is_file():
        raise ImagekitError(Problem(path, "", "no such SIF file"))
    try:
        return inspect(path)
    except BuildFailed as exc:
        reason = str(exc).splitlines()[0].partition(": ")[2].rstrip(":") or "unreadable"
        raise ImagekitError(Problem(path, "", f"not a SIF image ({reason})")) from None


OBJECT_COLUMNS = ("id", "group", "type", "start", "end", "size")


def described(path: Path) -> Said:
    """`imagekit inspect`: the launch script and header, a row per object, the labels and
    the definition file; as JSON, what `inspect` read."""
    info = inspect_file(path)
    rows = [(str(o["id"]), o["group"], o["kind"], str(o["start"]), str(o["end"]),
             str(o["end"] - o["start"])) for o in info["objects"]]
    labels = [f"  {key} = {value}" for key, value in sorted(info["labels"].items())]
    return Said([f"launch script: {info['launch']}\n{info['header']}",
                 Rows(OBJECT_COLUMNS, rows, title="objects"), Markup("[bold]labels[/]"),
                 *labels, Markup("[bold]definition file[/]"), info["deffile"]], data=info)
