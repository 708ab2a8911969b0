#!/usr/bin/env bash
# Install what imagekit needs on a fresh Debian machine (run as root): bookworm, trixie or sid.
# The Docker engine (Debian's docker.io; bookworm's /usr/bin/docker 20.10 client has BuildKit
# built in, the Docker 26 and 28 clients of trixie and sid build with BuildKit only through
# the buildx plugin, docker-buildx) with pigz (dockerd and containerd decompress pulled
# layers with its unpigz when it is on PATH, otherwise with Go's slower gzip), debootstrap
# for the base image, squashfs-tools and siftool for SIFs, docker-compose for pytest-docker,
# Chromium to check the catalog site (`imagekit
# site`), Podman (the other engine, rootful and rootless: uidmap, slirp4netns, runc) and
# imagekit itself with its test dependencies, and QEMU's user-mode emulation for arm64 images
# (qemu-user-static, binfmt-support; scripts/emulation.sh registers it). The end-to-end tests
# (tests/integration/e2e/) also need Slurm and munge, an SSH server for the "login node",
# and configurable-http-proxy (from npm) for JupyterHub; the unit tests need TypeScript's
# compiler (from npm), and the run of the generated GitHub workflow by act needs sudo, which
# its steps call as on GitHub's runners. None of their services is started here: the tests
# start and stop their own.
#
# `scripts/setup.sh --packages [SUITE]` prints the Debian packages it installs on SUITE (the
# host's by default) and changes nothing: tests/integration/test_setup.py resolves that list
# against bookworm's, trixie's and sid's own indexes.
set -euo pipefail
cd "$(dirname "$0")/.."

host_suite() {
    # sid names itself after the next release (forky); what matters here is "not bookworm".
    (. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
}

suite="$(host_suite)"
if [ "${1:-}" = "--packages" ]; then suite="${2:-$suite}"; fi
packages=(docker.io pigz debootstrap squashfs-tools siftool bubblewrap docker-compose openssl procps
          docker-registry ca-certificates curl chromium fonts-dejavu-core gnupg
          slurmctld slurmd slurm-client munge openssh-server openssh-client
          podman uidmap slirp4netns runc fuse-overlayfs catatonit mmdebstrap
          binfmt-support sudo nodejs npm)
case "$suite" in
    # Docker 20.10: BuildKit is built into its client; Debian has no buildx for it.
    bookworm) packages+=(qemu-user-static) ;;
    trixie) packages+=(qemu-user-static docker-buildx) ;;
    # After trixie qemu-user is itself static; qemu-user-binfmt registers it (and provides
    # the name qemu-user-static, which dpkg would never find installed).
    *) packages+=(qemu-user-binfmt docker-buildx) ;;
esac
if [ "${1:-}" = "--packages" ]; then
    printf '%s\n' "${packages[@]}"
    exit 0
fi
missing=()
for p in "${packages[@]}"; do
    # A Node from elsewhere (NodeSource, nvm) serves as well as Debian's: kept as it is.
    case "$p" in nodejs|npm) if command -v npm >/dev/null; then continue; fi ;; esac
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # Install without starting anything (sshd, munged, slurmd would come up on the host).
    policy=/usr/sbin/policy-rc.d
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod 755 "$policy"
        trap 'rm -f "$policy"' EXIT
    fi
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# JupyterHub's proxy, for the end-to-end tests and `make e2e`: kept in its own prefix.
chp=/var/cache/imagekit/chp
if [ ! -x "$chp/node_modules/.bin/configurable-http-proxy" ]; then
    npm install --silent --no-audit --no-fund --prefix "$chp" configurable-http-proxy@4 >/dev/null
fi
# TypeScript's compiler, for the tests that run a consumer's own TypeScript (the Kubeflow
# form's imageDisplayName): it strips the types, node runs the function as its source has it.
ts=/var/cache/imagekit/typescript
if [ ! -e "$ts/node_modules/typescript/package.json" ]; then
    npm install --silent --no-audit --no-fund --prefix "$ts" typescript@5.9.3 >/dev/null
fi
scripts/podman-host.sh
# arm64 beside amd64: QEMU in binfmt_misc (imagekit says clearly when it is missing).
scripts/emulation.sh || echo "setup: no arm64 emulation here; amd64 builds are unaffected"
python3 -m pip install -q --disable-pip-version-check -e '.[test]'
echo "setup: done"
