#!/usr/bin/env bash
# What Podman needs from the host that a stock Debian host has and some VMs (this project's
# CI among them) lack. Each fix is applied only where the check shows it is needed, so on a
# normal host this does nothing. Run as root (scripts/setup.sh runs it).
set -euo pipefail
conf=/etc/containers/containers.conf.d/50-imagekit-host.conf
lines=()
# crun 1.8 refuses a cgroup v1 hierarchy that also mounts cgroup v2 controllers ("cgroups
# in hybrid mode not supported"); runc runs there, rootful and rootless.
if [ ! -f /sys/fs/cgroup/cgroup.controllers ] && command -v runc >/dev/null; then
    lines+=("[engine]" 'runtime = "runc"')
fi
# As root, Podman raises every container's open-file and process limits to the kernel's
# maximum, which fails ("setrlimit: operation not permitted") where the bounding set lacks
# CAP_SYS_RESOURCE. Then give containers the host's own hard limits instead.
capbnd=$(awk '/^CapBnd/ {print $2}' /proc/self/status)
if (( (0x$capbnd >> 24 & 1) == 0 )); then
    # An unlimited hard limit (common inside containers) is Podman's default already.
    nofile=$(ulimit -Hn); [ "$nofile" = unlimited ] && nofile=1048576
    # conmon runs the container with at most 32768 processes here, whatever the shell has
    nproc=$(ulimit -Hu); [ "$nproc" = unlimited ] && nproc=32768
    nproc=$(( nproc < 32768 ? nproc : 32768 ))
    lines=("[containers]" "default_ulimits = [\"nofile=$nofile:$nofile\", \"nproc=$nproc:$nproc\"]"
           "${lines[@]}")
fi
if [ "${#lines[@]}" -gt 0 ]; then
    mkdir -p "$(dirname "$conf")"
    { echo "# Written by imagekit's scripts/podman-host.sh for this host's kernel; see there."
      printf '%s\n' "${lines[@]}"; } > "$conf.tmp"
    mv "$conf.tmp" "$conf"
    echo "podman-host: wrote $conf"
fi
# Rootless Podman's network (slirp4netns) opens /dev/net/tun inside the user's namespace;
# Debian's udev makes it 0666, a VM without udev may leave it 0600 (root only).
if [ -c /dev/net/tun ] && [ "$(stat -c %a /dev/net/tun)" != 666 ]; then
    chmod 0666 /dev/net/tun
    echo "podman-host: /dev/net/tun is now 0666, as udev makes it"
fi
