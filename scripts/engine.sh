#!/usr/bin/env bash
# Run a command with a Docker engine available: start dockerd if none answers, and stop it
# again afterwards if we started it (unless --keep). Usage: scripts/engine.sh [--keep] CMD...
# `scripts/engine.sh --stop` stops a dockerd that an earlier --keep left running.
set -euo pipefail
keep=0
pidfile="${TMPDIR:-/tmp}/imagekit-dockerd.pid"
if [ "${1:-}" = "--stop" ]; then
    if [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null; then
        for _ in $(seq 1 60); do kill -0 "$(cat "$pidfile")" 2>/dev/null || break; sleep 0.5; done
        echo "engine: stopped the dockerd imagekit started"
    else
        echo "engine: no dockerd started by imagekit is running"
    fi
    rm -f "$pidfile"
    exit 0
fi
if [ "${1:-}" = "--keep" ]; then keep=1; shift; fi

started=0
log="${TMPDIR:-/tmp}/imagekit-dockerd.log"
if ! docker info >/dev/null 2>&1; then
    if ! command -v dockerd >/dev/null; then
        echo "engine: dockerd is not installed (run scripts/setup.sh)" >&2
        exit 2
    fi
    # BuildKit's default garbage collection keeps the build cache under 10 % of the disk and
    # drops the least used records first, cache mounts among them: a CI disk then lost the
    # uv cache mount holding pytorch-cuda's 3 GB of wheels between its two builds, and the
    # rebuild downloaded them again. This engine keeps up to 40 % of the space that is free
    # when it starts (not of the disk's size: a CI machine's disk may be large and mostly
    # taken), and its policy prunes layers and build contexts first, which a build remakes
    # from the cache mounts, and the cache mounts (downloads) only when that is not enough.
    config="${TMPDIR:-/tmp}/imagekit-dockerd.json"
    free_gb="$(df --output=avail -B1G /var/lib 2>/dev/null | tail -1 | tr -d ' ')"
    keep_gb=$(( ${free_gb:-50} * 40 / 100 ))
    [ "$keep_gb" -ge 8 ] || keep_gb=8
    # Each rule carries its own cap (defaultKeepStorage would only fill in a missing one).
    rule="\"keepStorage\": \"${keep_gb}GB\""
    printf '{"builder": {"gc": {"enabled": true, "policy": [%s, %s, %s]}}}\n' \
        "{$rule, \"filter\": [\"type=regular\"]}" \
        "{$rule, \"filter\": [\"type=source.local\"]}" "{$rule, \"all\": true}" > "$config"
    echo "engine: starting dockerd (log: $log; build cache kept up to ${keep_gb} GB)"
    dockerd --config-file "$config" >"$log" 2>&1 &
    echo $! > "${TMPDIR:-/tmp}/imagekit-dockerd.pid"
    started=1
    for _ in $(seq 1 120); do
        docker info >/dev/null 2>&1 && break
        sleep 0.5
    done
    docker info >/dev/null 2>&1 || { echo "engine: dockerd did not come up" >&2; tail -20 "$log" >&2; exit 1; }
fi

stop() {
    if [ "$started" = 1 ] && [ "$keep" = 0 ]; then
        echo "engine: stopping the dockerd we started"
        pid="$(cat "${TMPDIR:-/tmp}/imagekit-dockerd.pid")"
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    fi
}
trap stop EXIT
"$@"
