"""What this machine can run: its own architecture, and others through binfmt_misc's QEMU."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from imagekit.engine.archive import image_archive
from imagekit.engine.emulation import host_platform, unable

ENTRY = ("enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: {flags}\n"
         "offset 0\nmagic 7f454c460201010000000000000000000200b700\n")


def _binfmt(tmp_path: Path, entry: str | None) -> Path:
    (tmp_path / "status").write_text("enabled\n")
    if entry is not None:
        (tmp_path / "qemu-aarch64").write_text(entry)
    return tmp_path


def test_the_hosts_own_platform_needs_nothing(tmp_path: Path) -> None:
    assert host_platform("x86_64") == "linux/amd64"
    assert host_platform("aarch64") == "linux/arm64"
    assert unable("linux/amd64", tmp_path, machine="x86_64") is None
    assert unable("linux/arm64", tmp_path, machine="aarch64") is None
    with pytest.raises(ValueError, match="riscv64"):
        host_platform("riscv64")


def test_arm64_on_amd64_runs_with_qemu_registered_with_the_f_flag(tmp_path: Path) -> None:
    assert unable("linux/arm64", _binfmt(tmp_path, ENTRY.format(flags="PF")),
                  machine="x86_64") is None


@pytest.mark.parametrize(("entry", "says"), [
    (None, "no qemu-aarch64 is registered in binfmt_misc (apt-get install qemu-user-static"),
    (ENTRY.format(flags="PF").replace("enabled", "disabled", 1),
     "registration is disabled (update-binfmts --enable qemu-aarch64)"),
    (ENTRY.format(flags="P"), "without the F flag, so containers cannot use it"),
])
def test_what_is_missing_is_said_with_its_fix(tmp_path: Path, entry: str | None,
                                              says: str) -> None:
    why = unable("linux/arm64", _binfmt(tmp_path, entry), machine="x86_64")
    assert why is not None and says in why
    assert why.startswith("this amd64 machine runs linux/arm64 programs only through QEMU")


def test_an_unmounted_binfmt_misc_is_named(tmp_path: Path) -> None:
    why = unable("linux/arm64", tmp_path / "nothing", machine="x86_64")
    assert why is not None and "binfmt_misc is not mounted (mount -t binfmt_misc" in why


def test_a_root_file_system_becomes_an_arm64_image_archive(tmp_path: Path) -> None:
    rootfs = io.BytesIO()
    with tarfile.open(fileobj=rootfs, mode="w") as tar:
        data = b"#!/bin/sh\n"
        info = tarfile.TarInfo("bin/sh")
        info.size, info.mode = len(data), 0o755
        tar.addfile(info, io.BytesIO(data))
    layer = rootfs.getvalue()
    rootfs.seek(0)
    archive = image_archive(rootfs, "imagekit/debian:bookworm-arm64", "linux/arm64", tmp_path,
                            "imagekit base: a test")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["image.tar"]
    with tarfile.open(archive) as tar:
        (manifest,) = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
        config = json.loads(tar.extractfile(manifest["Config"]).read())  # type: ignore[union-attr]
        kept = tar.extractfile(manifest["Layers"][0]).read()  # type: ignore[union-attr]
    assert manifest["RepoTags"] == ["imagekit/debian:bookworm-arm64"]
    assert (config["architecture"], config["os"], config["variant"]) == ("arm64", "linux", "v8")
    assert kept == layer
    assert config["rootfs"]["diff_ids"] == [f"sha256:{hashlib.sha256(layer).hexdigest()}"]
    assert config["history"][0]["created_by"] == "imagekit base: a test"
