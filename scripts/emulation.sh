#!/usr/bin/env bash
# Let this machine run other architectures' programs (arm64 on amd64) for `imagekit base`,
# `build` and `test --platform`: QEMU's user-mode emulator registered in the kernel's
# binfmt_misc with the F flag (the kernel opens the emulator once, so it works inside
# containers and chroots that do not hold it). Needs root and Debian's qemu-user-static and
# binfmt-support (scripts/setup.sh installs them). Idempotent; says what it found.
set -euo pipefail
misc=/proc/sys/fs/binfmt_misc
if [ ! -e "$misc/register" ]; then
    mount -t binfmt_misc binfmt_misc "$misc"
fi
if [ ! -e "$misc/qemu-aarch64" ] || ! grep -qx enabled "$misc/qemu-aarch64"; then
    update-binfmts --enable qemu-aarch64
fi
if ! grep -q '^flags: .*F' "$misc/qemu-aarch64"; then
    echo "emulation: qemu-aarch64 is registered without the F flag; containers cannot use it" >&2
    exit 1
fi
echo "emulation: linux/arm64 programs run through $(sed -n 's/^interpreter //p' "$misc/qemu-aarch64")"
