#!/bin/bash
# RStudio Server as the main app on $JUPYTER_PORT at / (Kubeflow's imageGroupTwo: the platform
# rewrites the prefix and sends X-RStudio-Root-Path). Under JupyterHub the image serves
# Jupyter and RStudio is reached through jupyter-rsession-proxy.
set -eu
if [ -n "${JUPYTERHUB_API_TOKEN:-}" ]; then
    exec start-notebook.sh "$@"
fi
if [ "$#" -gt 0 ] && [ "${1#-}" = "$1" ]; then
    exec "$@"
fi
data="${TMPDIR:-/tmp}/imagekit-$(id -u)/rstudio"
mkdir -p "$data/db"
# rserver's default database lives under /var/lib, which the notebook user cannot write.
printf 'provider=sqlite\ndirectory=%s/db\n' "$data" > "$data/database.conf"
export USER="${USER:-$(id -un 2>/dev/null || echo jovyan)}"
exec /usr/lib/rstudio-server/bin/rserver \
    --server-daemonize=0 \
    --www-address=0.0.0.0 \
    --www-port="${JUPYTER_PORT:-8888}" \
    --auth-none=1 \
    --server-user="${USER}" \
    --server-data-dir="$data" \
    --database-config-file="$data/database.conf" \
    "$@"
