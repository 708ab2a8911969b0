#!/usr/bin/env bash
# Install what imagekit needs on a fresh Debian bookworm machine (run as root):
# the Docker engine (Debian's docker.io: its /usr/bin/docker 20.10 client has BuildKit
# built in), debootstrap for the base image, squashfs-tools and siftool for SIFs,
# docker-compose for pytest-docker, Chromium to check the catalog site (`imagekit site`),
# Podman (the other engine, rootful and rootless: uidmap, slirp4netns, runc) and imagekit
# itself with its test dependencies, and QEMU's user-mode emulation for arm64 images
# (qemu-user-static, binfmt-support; scripts/emulation.sh registers it). The end-to-end tests
# (tests/integration/e2e/) also need Slurm and munge, an SSH server for the "login node",
# and configurable-http-proxy (from npm) for JupyterHub; the unit tests need TypeScript's
# compiler (from npm), and the run of the generated GitHub workflow by act needs sudo, which
# its steps call as on GitHub's runners. None of their services is started here: the tests
# start and stop their own.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(docker.io debootstrap squashfs-tools siftool bubblewrap docker-compose openssl procps
          docker-registry ca-certificates curl chromium fonts-dejavu-core gnupg
          slurmctld slurmd slurm-client munge openssh-server openssh-client
          podman uidmap slirp4netns runc fuse-overlayfs catatonit mmdebstrap
          qemu-user-static binfmt-support sudo)
missing=()
for p in "${packages[@]}"; do
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
if ! command -v npm >/dev/null; then
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
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
