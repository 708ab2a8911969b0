#!/bin/bash
# code-server as the main app on $JUPYTER_PORT, served at / (Kubeflow rewrites NB_PREFIX away,
# see its imageGroupOne). Under JupyterHub the image serves Jupyter instead and code-server is
# reached through jupyter-vscode-proxy below the user's prefix.
set -eu
if [ -n "${JUPYTERHUB_API_TOKEN:-}" ]; then
    exec start-notebook.sh "$@"
fi
if [ "$#" -gt 0 ] && [ "${1#-}" = "$1" ]; then
    exec "$@"
fi
export HOME="${HOME:-/home/jovyan}"
if [ ! -w "$HOME" ]; then
    export HOME="${TMPDIR:-/tmp}/imagekit-$(id -u)/home"
    mkdir -p "$HOME"
fi
if [ -z "${APPTAINER_CONTAINER:-}${SINGULARITY_CONTAINER:-}" ] \
    && [ -d /opt/imagekit/home-seed ] && [ ! -e "$HOME/.imagekit-seeded" ]; then
    cp -an /opt/imagekit/home-seed/. "$HOME/" 2>/dev/null || true
    : > "$HOME/.imagekit-seeded" 2>/dev/null || true
fi
auth=(--auth none)
if [ -z "${NB_PREFIX:-}" ]; then
    # Plain docker run: protect it. JUPYTER_TOKEN doubles as the password, as in the
    # Jupyter images; otherwise one is generated and printed.
    PASSWORD="${PASSWORD:-${JUPYTER_TOKEN:-$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')}}"
    export PASSWORD
    auth=(--auth password)
    echo "imagekit: code-server password: ${PASSWORD}" >&2
    echo "imagekit: open http://127.0.0.1:${JUPYTER_PORT:-8888}/" >&2
fi
exec code-server \
    --bind-addr "0.0.0.0:${JUPYTER_PORT:-8888}" \
    "${auth[@]}" \
    --disable-telemetry \
    --disable-update-check \
    --trusted-origins '*' \
    "$@" \
    "$HOME"
