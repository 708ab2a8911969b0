#!/usr/bin/env bash
# A local registry for publishing: Debian's docker-registry (distribution v2), plain HTTP on
# loopback, data kept in a folder of its own. Usage: scripts/registry.sh start|stop|status
#   IMAGEKIT_REGISTRY_ADDR  listen address (default 127.0.0.1:5055, the catalog's registry)
#   IMAGEKIT_REGISTRY_DIR   config, data, pid and log (default /var/lib/imagekit/registry)
#   IMAGEKIT_REGISTRY_HTPASSWD  an htpasswd file (bcrypt): ask for these users' credentials
#   IMAGEKIT_REGISTRY_TLS_CERT, IMAGEKIT_REGISTRY_TLS_KEY  serve HTTPS with this certificate
set -euo pipefail
addr="${IMAGEKIT_REGISTRY_ADDR:-127.0.0.1:5055}"
dir="${IMAGEKIT_REGISTRY_DIR:-/var/lib/imagekit/registry}"
pidfile="$dir/registry.pid"

scheme=http
[ -n "${IMAGEKIT_REGISTRY_TLS_CERT:-}" ] && scheme=https

# Up means /v2/ answers at all: 200, or 401 when it asks for credentials.
answers() {
    code="$(curl -ksS -o /dev/null -w '%{http_code}' --max-time 2 "$scheme://$addr/v2/" \
            2>/dev/null)"
    [ "$code" = 200 ] || [ "$code" = 401 ]
}

start() {
    if answers; then echo "registry: already answering on $addr"; return 0; fi
    command -v docker-registry >/dev/null || {
        echo "registry: docker-registry is not installed (run scripts/setup.sh)" >&2; exit 2; }
    mkdir -p "$dir/data"
    cat > "$dir/config.yml" <<YAML
version: 0.1
log: {level: warn, fields: {service: registry}}
storage:
  filesystem: {rootdirectory: $dir/data}
  delete: {enabled: true}
http:
  addr: "$addr"
YAML
    if [ "$scheme" = https ]; then
        printf '  tls: {certificate: %s, key: %s}\n' "$IMAGEKIT_REGISTRY_TLS_CERT" \
            "$IMAGEKIT_REGISTRY_TLS_KEY" >> "$dir/config.yml"
    fi
    if [ -n "${IMAGEKIT_REGISTRY_HTPASSWD:-}" ]; then
        printf 'auth:\n  htpasswd: {realm: imagekit, path: %s}\n' "$IMAGEKIT_REGISTRY_HTPASSWD" \
            >> "$dir/config.yml"
    fi
    setsid docker-registry serve "$dir/config.yml" >"$dir/registry.log" 2>&1 < /dev/null &
    echo $! > "$pidfile"
    for _ in $(seq 1 50); do answers && break; sleep 0.2; done
    answers || { echo "registry: did not come up on $addr" >&2; tail -5 "$dir/registry.log" >&2; exit 1; }
    echo "registry: serving on $scheme://$addr (data in $dir/data)"
}

stop() {
    if [ -f "$pidfile" ]; then
        pid="$(cat "$pidfile")"
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        rm -f "$pidfile"
        echo "registry: stopped"
    else
        echo "registry: not started by this script"
    fi
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) if answers; then echo "registry: answering on $addr"; else echo "registry: down"; exit 1; fi ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
