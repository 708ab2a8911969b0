#!/usr/bin/env bash
# Install what imagekit needs on a fresh Debian bookworm machine (run as root):
# the Docker engine (Debian's docker.io: its /usr/bin/docker 20.10 client has BuildKit
# built in), debootstrap for the base image, squashfs-tools and siftool for SIFs,
# docker-compose for pytest-docker, and imagekit itself with its test dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(docker.io debootstrap squashfs-tools siftool bubblewrap docker-compose openssl
          docker-registry ca-certificates curl)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
python3 -m pip install -q --disable-pip-version-check -e '.[test]'
echo "setup: done"
