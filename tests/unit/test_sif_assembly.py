"""Given an image's config and its rendered definition, when imagekit assembles a SIF
natively, then the root holds what Singularity's runtime reads, the squashfs is
reproducible, and the SIF carries the definition, labels and config. No engine: the image's
filesystem is a small folder; mksquashfs and siftool run for real when installed."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import stat
import struct
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from imagekit import sif
from imagekit.engine.client import ImageInfo
from imagekit.errors import BuildFailed, ImagekitError
from imagekit.model import Catalog
from imagekit.render.singularity import SingularityRenderer
from tests.unit.fakes import FakeEngine, without_wheelhouse

needs_squashfs = pytest.mark.skipif(shutil.which("mksquashfs") is None,
                                    reason="mksquashfs is not installed")
needs_siftool = pytest.mark.skipif(shutil.which("siftool") is None or
                                   shutil.which("mksquashfs") is None,
                                   reason="siftool or mksquashfs is not installed")

INFO = ImageInfo(
    id="sha256:" + "d" * 64,
    labels={"io.imagekit.image": "scipy", "org.opencontainers.image.title": "scipy"},
    size=1234, tags=("r/scipy:latest",), architecture="amd64",
    env=("PATH=/opt/venv/bin:/usr/bin", 'GREETING=say "hi" to $USER `now` \\o/', "EMPTY=",
         "NOEQUALS"),
    entrypoint=("tini", "--"), cmd=("start-notebook.sh",),
)


@pytest.fixture
def deffile(catalog: Catalog) -> str:
    return SingularityRenderer().render(catalog, catalog.images["scipy"])["Singularity.def"]


def rootfs(tmp_path: Path) -> Path:
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/hello").write_text("#!/bin/sh\necho hello\n")
    (root / "usr/bin/hello").chmod(0o755)
    (root / "etc/hosts").symlink_to("/proc/self/hosts")  # as some images ship it
    (root / "etc/resolv.conf").write_text("nameserver 10.0.0.1\n")
    return root


# --- the environment script ------------------------------------------------------------------

def test_path_from_the_image_wins() -> None:
    assert sif._env_line("PATH=/opt/venv/bin:/usr/bin") == 'export PATH="/opt/venv/bin:/usr/bin"'


def test_other_variables_keep_a_value_the_host_set() -> None:
    assert sif._env_line("LANG=C.UTF-8") == 'export LANG="${LANG:-"C.UTF-8"}"'


def test_the_env_script_gives_back_each_value_literally(tmp_path: Path) -> None:
    root = rootfs(tmp_path)
    sif.write_singularity_dir(root, INFO, "%runscript\n    true\n")
    script = root / ".singularity.d/env/10-docker2singularity.sh"
    shown = subprocess.run(
        ["sh", "-c", f'. {script}; printf "%s|%s|%s" "$GREETING" "$EMPTY" "$PATH"'],
        capture_output=True, text=True, check=True, env={"USER": "someone"}).stdout
    assert shown == 'say "hi" to $USER `now` \\o/||/opt/venv/bin:/usr/bin'
    kept = subprocess.run(["sh", "-c", f'. {script}; printf %s "$GREETING"'],
                          capture_output=True, text=True, check=True,
                          env={"GREETING": "from the host"}).stdout
    assert kept == "from the host"
    assert "NOEQUALS" not in script.read_text()


# --- /.singularity.d --------------------------------------------------------------------------

def test_sections_of_the_rendered_definition(deffile: str) -> None:
    assert sif._section(deffile, "runscript") == 'exec start-notebook.sh "$@"'
    assert sif._section(deffile, "startscript") == 'exec start-notebook.sh "$@"'
    test = sif._section(deffile, "test")
    assert test.startswith("set -eu\n") and "passed its %test checks" in test
    assert "\n    out=" in test  # deeper indentation survives the dedent
    assert sif._section(deffile, "environment") == ""


def test_the_singularity_folder(tmp_path: Path, deffile: str) -> None:
    root = rootfs(tmp_path)
    sif.write_singularity_dir(root, INFO, deffile)
    sd = root / ".singularity.d"
    for point in sif.MOUNT_POINTS:
        assert (root / point).is_dir(), point
    assert stat.S_IMODE((root / "tmp").stat().st_mode) == 0o1777
    assert stat.S_IMODE((root / "var/tmp").stat().st_mode) == 0o1777
    for name in ("etc/hosts", "etc/resolv.conf"):
        assert not (root / name).is_symlink() and (root / name).read_text() == ""
    for name in ("env/10-docker2singularity.sh", "env/90-environment.sh", "env/99-base.sh",
                 "runscript", "startscript", "test"):
        assert stat.S_IMODE((sd / name).stat().st_mode) == 0o755, name
    assert (sd / "runscript").read_text() == '#!/bin/sh\nexec start-notebook.sh "$@"\n'
    assert (sd / "Singularity").read_text() == deffile
    labels = json.loads((sd / "labels.json").read_text())
    assert labels["io.imagekit.image-id"] == INFO.id
    assert labels["org.opencontainers.image.title"] == "scipy"
    assert os.readlink(root / "singularity") == ".singularity.d/runscript"
    assert os.readlink(root / "runscript") == ".singularity.d/runscript"
    assert os.readlink(root / "environment") == ".singularity.d/env/90-environment.sh"


def test_an_image_own_runscript_is_left_alone(tmp_path: Path) -> None:
    root = rootfs(tmp_path)
    (root / "runscript").write_text("mine\n")
    sif.write_singularity_dir(root, INFO, "")
    assert (root / "runscript").read_text() == "mine\n"
    assert (root / ".singularity.d/runscript").read_text() == "#!/bin/sh\n\n"


def test_labels_and_config_objects() -> None:
    assert sif.labels(INFO) == {**INFO.labels, "io.imagekit.image-id": INFO.id}
    config = sif.image_config(INFO)
    assert config["architecture"] == "amd64"
    assert config["config"]["Entrypoint"] == ["tini", "--"]
    assert config["config"]["Cmd"] == ["start-notebook.sh"]
    assert config["config"]["Env"][0] == "PATH=/opt/venv/bin:/usr/bin"


# --- squashfs and SIF ---------------------------------------------------------------------------

def superblock(path: Path) -> tuple[bytes, int, int]:
    """Magic, mkfs time and compressor id of a squashfs (gzip is 1)."""
    head = path.read_bytes()[:24]
    return head[:4], struct.unpack_from("<I", head, 8)[0], struct.unpack_from("<H", head, 20)[0]


@needs_squashfs
def test_a_zstd_squashfs_is_the_same_bytes_every_time(tmp_path: Path) -> None:
    root = rootfs(tmp_path)
    one, two = tmp_path / "one.sqfs", tmp_path / "two.sqfs"
    sif.make_squashfs(root, one, "zstd", 3)
    os.utime(root / "usr/bin/hello", (1e9, 1e9))
    sif.make_squashfs(root, two, "zstd", 3)
    assert one.read_bytes() == two.read_bytes()
    assert superblock(one)[2] == 6  # zstd


@needs_squashfs
def test_the_squashfs_is_gzip_and_the_same_bytes_every_time(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    root = rootfs(tmp_path)
    one, two = tmp_path / "one.sqfs", tmp_path / "two.sqfs"
    sif.make_squashfs(root, one, "gzip", 6)
    os.utime(root / "usr/bin/hello", (1e9, 1e9))
    sif.make_squashfs(root, two, "gzip", 6)
    assert one.read_bytes() == two.read_bytes()
    assert superblock(one) == (b"hsqs", 0, 1)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    sif.make_squashfs(root, two, "gzip", 6)
    assert superblock(two)[1] == 1700000000


@needs_siftool
def test_a_sif_carries_the_definition_labels_config_and_root(tmp_path: Path,
                                                             deffile: str) -> None:
    root = rootfs(tmp_path)
    sif.write_singularity_dir(root, INFO, deffile)
    squashfs = tmp_path / "root.sqfs"
    sif.make_squashfs(root, squashfs, "gzip", 6)
    files = {"def": tmp_path / "Singularity.def", "labels": tmp_path / "labels.json",
             "config": tmp_path / "config.json"}
    files["def"].write_text(deffile)
    files["labels"].write_text(json.dumps(sif.labels(INFO)))
    files["config"].write_text(json.dumps(sif.image_config(INFO)))
    out = tmp_path / "scipy.sif"
    sif.assemble(out, files["def"], files["labels"], files["config"], squashfs,
                 sif.ARCHES["amd64"])

    assert out.read_bytes().startswith(sif.LAUNCH)
    found = sif.inspect(out)
    assert found["launch"] == "#!/usr/bin/env run-singularity"
    assert found["deffile"] == deffile
    assert found["labels"]["io.imagekit.image-id"] == INFO.id
    assert [o["kind"] for o in found["objects"]] == [
        "Def.FILE", "JSON.Generic", "JSON.Generic", "FS (Squashfs/*System/amd64)"]
    assert {o["group"] for o in found["objects"]} == {"1"}
    system = found["objects"][-1]
    assert system["end"] - system["start"] == squashfs.stat().st_size


def test_a_siftool_listing_is_parsed() -> None:
    listing = (
        "------------------------------------------------------------------------------\n"
        "ID   |GROUP   |LINK    |SIF POSITION (start-end)  |TYPE\n"
        "------------------------------------------------------------------------------\n"
        "1    |1       |NONE    |32176-33000               |Def.FILE\n"
        "4    |1       |NONE    |36864-1036864             |FS (Squashfs/*System/amd64)\n")
    assert sif.parse_list(listing) == [
        sif.SifObject(1, "1", "Def.FILE", 32176, 33000),
        sif.SifObject(4, "1", "FS (Squashfs/*System/amd64)", 36864, 1036864)]


def test_inspecting_a_missing_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(ImagekitError, match="no such file"):
        sif.inspect(tmp_path / "none.sif")


# --- build_sif, with the image's filesystem from a folder ----------------------------------------

@pytest.fixture
def sif_catalog(catalog: Catalog, tmp_path: Path) -> Catalog:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    return dataclasses.replace(without_wheelhouse(catalog, wheels), root=tmp_path / "project")


@pytest.fixture
def engine(sif_catalog: Catalog) -> FakeEngine:
    engine = FakeEngine()
    engine.add(INFO.id, sif_catalog.ref("scipy"), labels=INFO.labels)
    return engine


def fake_export(engine: object, image_id: str, root: Path) -> None:
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/hello").write_text("#!/bin/sh\necho hello\n")


@needs_siftool
def test_build_sif_natively_then_from_its_record(sif_catalog: Catalog, engine: FakeEngine,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sif, "export", fake_export)
    image = sif_catalog.images["scipy"]
    first = sif.build_sif(sif_catalog, engine, image, method="native")
    out = sif.sif_path(sif_catalog, image)
    assert out == sif_catalog.root / "dist/scipy_latest.sif"
    assert (first.status, first.method, first.image_id) == ("built", "native", INFO.id)
    assert first.sha256 == sif.sha256_file(out) and first.size == out.stat().st_size
    # The conversion writes .scipy_latest.sif.<random>.partial beside it, then renames it.
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name, out.name + ".json"]
    assert sif.read_sidecar(out) == first.as_dict()

    again = sif.build_sif(sif_catalog, engine, image, method="native")
    assert again.status == "cached" and again.sha256 == first.sha256
    assert sif.build_sif(sif_catalog, engine, image, method="native", level=1).status == "built"
    assert sif.build_sif(sif_catalog, engine, image, method="native", level=1,
                         force=True).status == "built"


@needs_siftool
def test_a_failed_conversion_leaves_the_old_sif_and_no_partial_file(
        sif_catalog: Catalog, engine: FakeEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sif, "export", fake_export)
    image = sif_catalog.images["scipy"]
    out = sif.sif_path(sif_catalog, image)
    first = sif.build_sif(sif_catalog, engine, image, method="native")
    seen: list[str] = []

    def squash_then_fail(root: Path, squashfs: Path, comp: str, level: int, *_: object
                         ) -> None:
        seen.extend(p.name for p in out.parent.glob(f".{out.name}.*.partial"))
        raise BuildFailed("mksquashfs: no space left on device")

    monkeypatch.setattr(sif, "make_squashfs", squash_then_fail)
    with pytest.raises(BuildFailed, match="no space left"):
        sif.build_sif(sif_catalog, engine, image, method="native", force=True)
    assert len(seen) == 1  # the real temporary name existed while converting ...
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name, out.name + ".json"]
    assert sif.sha256_file(out) == first.sha256  # ... and is gone, the old SIF kept


def test_build_sif_needs_the_image(sif_catalog: Catalog) -> None:
    with pytest.raises(ImagekitError, match="is not built"):
        sif.build_sif(sif_catalog, FakeEngine(), sif_catalog.images["scipy"])


@needs_siftool
def test_the_catalogs_compression_makes_the_squashfs_and_a_change_converts_again(
        sif_catalog: Catalog, engine: FakeEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sif, "export", fake_export)
    image = sif_catalog.images["scipy"]
    out = sif.sif_path(sif_catalog, image)
    gzip = sif.build_sif(sif_catalog, engine, image, method="native")
    assert gzip.compression == "gzip-5"
    zstd_catalog = dataclasses.replace(sif_catalog, sif_compression="zstd")
    zstd = sif.build_sif(zstd_catalog, engine, image, method="native")
    assert (zstd.status, zstd.compression) == ("built", "zstd-3")
    data = out.read_bytes()
    start = data.index(b"hsqs")  # the primary partition's superblock: zstd is 6
    assert struct.unpack_from("<H", data, start + 20)[0] == 6
    assert sif.build_sif(zstd_catalog, engine, image, method="native").status == "cached"
    at_9 = dataclasses.replace(zstd_catalog, sif_level=9)
    assert sif.build_sif(at_9, engine, image, method="native").compression == "zstd-9"
    # The command line's level wins over the catalog's, within the compression's levels.
    assert sif.build_sif(at_9, engine, image, method="native", level=19).compression \
        == "zstd-19"
    with pytest.raises(ImagekitError, match=r"--sif-level 12: gzip's levels are 1-9"):
        sif.build_sif(sif_catalog, engine, image, method="native", level=12)


@pytest.mark.parametrize(("said", "takes_args"), [
    ("apptainer version 1.4.5", True), ("apptainer version 1.10.0-rc1", True),
    ("apptainer version 1.3.6-1.el9", False), ("singularity-ce version 4.3.1", False),
    ("something else", False)])
def test_apptainer_1_4_gets_the_compression_through_its_mksquashfs_args(
        sif_catalog: Catalog, engine: FakeEngine, monkeypatch: pytest.MonkeyPatch, said: str,
        takes_args: bool) -> None:
    """Apptainer >= 1.4 is handed the catalog's compression, level and block size, as one
    word, gzip's too (left alone, its gzip is level 9); SingularityCE and older Apptainers
    have no --mksquashfs-args, so their gzip stays their own. The version is asked once."""
    calls: list[list[str]] = []

    def runtime(argv: list[str], **_: object) -> subprocess.CompletedProcess[bytes]:
        calls.append(argv)
        if argv[1:] == ["--version"]:
            return subprocess.CompletedProcess(argv, 0, said.encode() + b"\n", b"")
        Path(argv[-2]).write_bytes(b"SIF")
        return subprocess.CompletedProcess(argv, 0, b"", b"")

    monkeypatch.setattr(sif, "_VERSIONS", {})
    monkeypatch.setattr(sif, "runtime_tool", lambda: "apptainer")
    monkeypatch.setattr(sif, "run", runtime)
    monkeypatch.setattr(sif, "add_sbom", lambda *_: None)
    monkeypatch.setattr(sif, "image_sbom", lambda *_: "")
    image = sif_catalog.images["scipy"]
    gzip = sif.build_sif(sif_catalog, engine, image)
    builds = [argv for argv in calls if argv[1] == "build"]
    # Apptainer's cache would keep every layer it reads for good (test_sif.py checks it).
    assert "--disable-cache" in builds[0]
    if not takes_args:
        assert gzip.compression == "gzip"
        assert "--mksquashfs-args" not in builds[0]
        # A level of the command line's changes nothing such a runtime is told: not again.
        assert sif.build_sif(sif_catalog, engine, image, level=1).status == "cached"
        assert [argv[1] for argv in calls] == ["--version", "build"]
        return
    assert gzip.compression == "gzip-5"
    zstd = dataclasses.replace(sif_catalog, sif_compression="zstd")
    assert sif.build_sif(zstd, engine, image).compression == "zstd-3"
    # A level of the command line's is a new way to make the squashfs: converted again.
    assert sif.build_sif(zstd, engine, image, level=1).status == "built"
    builds = [argv for argv in calls if argv[1] == "build"]
    assert [argv[argv.index("--mksquashfs-args") + 1] for argv in builds] == [
        "-comp gzip -Xcompression-level 5 -b 256K", "-comp zstd -Xcompression-level 3 -b 256K",
        "-comp zstd -Xcompression-level 1 -b 256K"]
    assert [argv[1] for argv in calls].count("--version") == 1


@pytest.mark.parametrize(("said", "refused"), [
    ("apptainer version 1.4.5", False), ("apptainer version 1.10.0-rc1", False),
    ("apptainer version 1.3.6-1.el9", True), ("singularity-ce version 4.3.1", True),
    ("singularity version 3.8.7", True), ("something else", False)])
def test_zstd_is_refused_for_a_runtime_that_cannot_run_it(
        monkeypatch: pytest.MonkeyPatch, said: str, refused: bool) -> None:
    monkeypatch.setattr(sif, "_VERSIONS", {})
    monkeypatch.setattr(sif, "run", lambda argv, **_: subprocess.CompletedProcess(
        argv, 0, said.encode() + b"\n", b""))
    sif.check_runtime_reads("gzip", "singularity")  # gzip: every runtime reads it
    sif.check_runtime_reads("zstd", None)  # native: who runs it is the site's word
    if refused:
        with pytest.raises(ImagekitError, match="cannot run a zstd SIF"):
            sif.check_runtime_reads("zstd", "singularity")
    else:
        sif.check_runtime_reads("zstd", "apptainer")


def test_build_sif_with_apptainer_needs_it(sif_catalog: Catalog, engine: FakeEngine,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sif, "runtime_tool", lambda: None)
    with pytest.raises(ImagekitError, match="neither apptainer nor singularity"):
        sif.build_sif(sif_catalog, engine, sif_catalog.images["scipy"], method="apptainer")


def test_an_unknown_architecture_has_no_sif_code(sif_catalog: Catalog, engine: FakeEngine,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    if shutil.which("mksquashfs") is None or shutil.which("siftool") is None:
        pytest.skip("mksquashfs or siftool is not installed")
    monkeypatch.setattr(sif, "export", fake_export)
    engine.by_id[INFO.id] = dataclasses.replace(engine.by_id[INFO.id], architecture="mips")
    with pytest.raises(ImagekitError, match="'mips' has no SIF code"):
        sif.build_sif(sif_catalog, engine, sif_catalog.images["scipy"], method="native")
    assert not sif.sif_path(sif_catalog, sif_catalog.images["scipy"]).exists()


def test_the_runtime_tool_is_apptainer_first(monkeypatch: pytest.MonkeyPatch) -> None:
    on_path = {"singularity"}
    monkeypatch.setattr(shutil, "which", lambda name: name if name in on_path else None)
    assert sif.runtime_tool() == "singularity"
    on_path.add("apptainer")
    assert sif.runtime_tool() == "apptainer"
    on_path.clear()
    assert sif.runtime_tool() is None


def test_a_damaged_or_missing_record_means_convert_again(tmp_path: Path) -> None:
    out = tmp_path / "x.sif"
    assert sif.read_sidecar(out) is None
    out.with_suffix(".sif.json").write_text("{not json")
    assert sif.read_sidecar(out) is None
    out.with_suffix(".sif.json").write_text("[1, 2]")
    assert sif.read_sidecar(out) is None
    out.with_suffix(".sif.json").write_text('{"image_id": "x"}')
    assert sif.read_sidecar(out) == {"image_id": "x"}


def test_sha256_of_a_file(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    assert sif.sha256_file(path) == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")


@needs_siftool
def test_a_record_with_a_key_it_does_not_know_makes_the_sif_again(
        sif_catalog: Catalog, engine: FakeEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    """A record written by another imagekit (a key this one does not know) is not trusted:
    the SIF is made again, never a TypeError traceback."""
    monkeypatch.setattr(sif, "export", fake_export)
    image = sif_catalog.images["scipy"]
    first = sif.build_sif(sif_catalog, engine, image, method="native")
    record = sif.sif_path(sif_catalog, image).with_suffix(".sif.json")
    record.write_text(json.dumps({**first.as_dict(), "cipher": "aes"}))
    again = sif.build_sif(sif_catalog, engine, image, method="native")
    assert again.status == "built" and "cipher" not in json.loads(record.read_text())
    # ... and so is one that lacks a field this one needs.
    record.write_text(json.dumps({k: v for k, v in again.as_dict().items() if k != "path"}))
    assert sif.build_sif(sif_catalog, engine, image, method="native").status == "built"


class Unpacking(FakeEngine):
    """An engine whose export is `size` bytes of tar stream, unpacked by `unpacker` (a
    stand-in for tar with tar's own ways of failing: a real program on real pipes)."""

    def __init__(self, unpacker: str, size: int = 1 << 20) -> None:
        super().__init__()
        self.unpacker, self.size = unpacker, size

    def as_root(self, argv: list[str]) -> list[str]:
        return ["sh", "-c", self.unpacker]

    @contextlib.contextmanager
    def export(self, image: str) -> Iterator[Iterator[bytes]]:
        yield iter([b"\0" * 65536] * (self.size // 65536))


def _export_in_time(engine: Unpacking, root: Path) -> BaseException | None:
    """sif.export in a thread: what it raised, or a failure if it hangs."""
    raised: list[BaseException] = []

    def run() -> None:
        try:
            sif.export(engine, "sha256:x", root)
        except BaseException as exc:
            raised.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive(), "the export and tar blocked each other"
    return raised[0] if raised else None


def test_tar_warning_more_than_a_pipe_holds_blocks_nothing(tmp_path: Path) -> None:
    chatty = Unpacking("head -c 300000 /dev/zero | tr '\\0' w >&2; cat >/dev/null")
    assert _export_in_time(chatty, tmp_path) is None


def test_tar_stopping_early_says_why(tmp_path: Path) -> None:
    stops = Unpacking("echo 'tar: rootfs: Cannot mkdir: Permission denied' >&2; exit 2")
    raised = _export_in_time(stops, tmp_path)
    assert isinstance(raised, BuildFailed), raised
    assert "Permission denied" in str(raised) and "Broken pipe" not in str(raised)


def _tree(root: Path) -> dict[str, str]:
    """Every entry under root: a file's content, a folder, a character device (a whiteout)."""
    seen: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        mode = path.lstat().st_mode
        seen[str(path.relative_to(root))] = (
            path.read_text() if stat.S_ISREG(mode) else "dir" if stat.S_ISDIR(mode)
            else "char" if stat.S_ISCHR(mode) else "link" if stat.S_ISLNK(mode) else "?")
    return seen


def _mounts_under(folder: Path) -> list[str]:
    return [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
            if line.split()[1].startswith(str(folder))]


@needs_siftool
@pytest.mark.skipif(os.geteuid() != 0, reason="mounting an overlay needs root (CI is root)")
def test_the_engines_layer_folders_are_squashed_through_an_overlay_left_as_they_were(
        sif_catalog: Catalog, engine: FakeEngine, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """dockerd's overlay2 store keeps each layer as a folder, a deleted file as a whiteout
    (a 0:0 character device): the SIF gets the merged view, the layers stay untouched."""
    lower, upper = tmp_path / "layers/lower", tmp_path / "layers/upper"
    for folder in (lower / "usr/bin", lower / "etc", upper / "usr/bin", upper / "etc"):
        folder.mkdir(parents=True)
    (lower / "usr/bin/hello").write_text("hello\n")
    (lower / "etc/gone").write_text("deleted in the layer above\n")
    (lower / "etc/kept").write_text("kept\n")
    (upper / "usr/bin/hello").write_text("hello again\n")
    os.mknod(upper / "etc/gone", stat.S_IFCHR, os.makedev(0, 0))
    layers_before = _tree(tmp_path / "layers")
    engine.layers = [upper, lower]
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.setenv("IMAGEKIT_WORKDIR", str(work))

    def no_export(*_: object) -> None:
        raise AssertionError("exported although the layers could be mounted")

    squashed: list[dict[str, str]] = []
    real = sif.make_squashfs

    def seen_then_squash(root: Path, out: Path, comp: str, level: int, *rest: object) -> None:
        squashed.append(_tree(root))
        assert _mounts_under(work), "the folder squashed is not a mount"
        real(root, out, comp, level)

    monkeypatch.setattr(sif, "export", no_export)
    monkeypatch.setattr(sif, "make_squashfs", seen_then_squash)
    built = sif.build_sif(sif_catalog, engine, sif_catalog.images["scipy"], method="native")
    assert built.status == "built"
    [merged] = squashed
    assert merged["usr/bin/hello"] == "hello again\n" and merged["etc/kept"] == "kept\n"
    assert "etc/gone" not in merged
    assert merged[".singularity.d/runscript"].startswith("#!/bin/sh")
    assert merged["etc/hosts"] == "" and merged["tmp"] == "dir"
    assert _tree(tmp_path / "layers") == layers_before  # nothing written into a layer
    assert _mounts_under(work) == [] and list(work.iterdir()) == []


@needs_siftool
def test_layer_folders_that_cannot_be_mounted_are_exported_instead(
        sif_catalog: Catalog, engine: FakeEngine, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    odd = tmp_path / "a:b"  # a ':' would split overlay's lowerdir option
    odd.mkdir()
    engine.layers = [odd]
    exported: list[str] = []

    def export(engine_: object, image_id: str, root: Path) -> None:
        exported.append(image_id)
        fake_export(engine_, image_id, root)

    monkeypatch.setattr(sif, "export", export)
    built = sif.build_sif(sif_catalog, engine, sif_catalog.images["scipy"], method="native")
    assert built.status == "built" and exported == [INFO.id]
