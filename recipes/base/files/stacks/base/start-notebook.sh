#!/bin/bash
# imagekit's start script: one image, every consumer.
#   docker run / Armada      token auth (JUPYTER_TOKEN if set, else Jupyter generates one and
#                            prints the URL with it)
#   Kubeflow                 NB_PREFIX set: served under it, no token (the platform
#                            authenticates), embeddable in an iframe
#   JupyterHub               JUPYTERHUB_API_TOKEN set: jupyterhub-singleuser
#   Singularity / Apptainer  read-only root, the caller's uid and $HOME: runtime files fall
#                            back to /tmp when $HOME is not writable
# Arguments that start with '-' are server flags (singularity run IMG.sif --ip=H --port=N);
# anything else is a command to run instead of the server.
set -eu

if [ "$#" -gt 0 ] && [ "${1#-}" = "$1" ]; then
    exec "$@"
fi

uid="$(id -u)"
export HOME="${HOME:-/home/jovyan}"

# XDG_RUNTIME_DIR from the host (/run/user/UID) is absent or not ours inside containers and
# breaks Jupyter: keep Jupyter's runtime files out of it.
if [ -n "${XDG_RUNTIME_DIR:-}" ] && [ ! -w "${XDG_RUNTIME_DIR}" ]; then
    unset XDG_RUNTIME_DIR
fi

home_writable=0
if [ -d "$HOME" ] && [ -w "$HOME" ]; then
    home_writable=1
elif [ ! -e "$HOME" ] && mkdir -p "$HOME" 2>/dev/null; then
    home_writable=1
fi

if [ "$home_writable" = 1 ]; then
    # An empty volume (a fresh PVC) mounted on the home gets the image's home contents once.
    # Not under Singularity/Apptainer: there $HOME is the user's own home on the cluster.
    if [ -z "${APPTAINER_CONTAINER:-}${SINGULARITY_CONTAINER:-}" ] \
        && [ -d /opt/imagekit/home-seed ] && [ ! -e "$HOME/.imagekit-seeded" ]; then
        cp -an /opt/imagekit/home-seed/. "$HOME/" 2>/dev/null || true
        : > "$HOME/.imagekit-seeded" 2>/dev/null || true
    fi
    root_dir="$HOME"
else
    scratch="${TMPDIR:-/tmp}/imagekit-${uid}"
    mkdir -p "$scratch/runtime" "$scratch/data" "$scratch/config" "$scratch/ipython" \
        "$scratch/cache" "$scratch/home"
    chmod 700 "$scratch"
    export JUPYTER_RUNTIME_DIR="${JUPYTER_RUNTIME_DIR:-$scratch/runtime}"
    export JUPYTER_DATA_DIR="${JUPYTER_DATA_DIR:-$scratch/data}"
    export JUPYTER_CONFIG_DIR="${JUPYTER_CONFIG_DIR:-$scratch/config}"
    export IPYTHONDIR="${IPYTHONDIR:-$scratch/ipython}"
    export XDG_CACHE_HOME="${XDG_CACHE_HOME:-$scratch/cache}"
    export MPLCONFIGDIR="${MPLCONFIGDIR:-$scratch/cache/matplotlib}"
    echo "imagekit: $HOME is not writable; runtime and data files go to $scratch" >&2
    if [ -r "$HOME" ] && [ -x "$HOME" ]; then root_dir="$HOME"; else root_dir="$scratch/home"; fi
fi
if [ -z "${JUPYTER_RUNTIME_DIR:-}" ] && [ -z "${XDG_RUNTIME_DIR:-}" ]; then
    export JUPYTER_RUNTIME_DIR="$HOME/.local/share/jupyter/runtime"
fi

for hook_dir in /usr/local/bin/start-notebook.d /usr/local/bin/before-notebook.d; do
    for hook in "$hook_dir"/*.sh; do
        [ -f "$hook" ] || continue
        echo "imagekit: running hook $hook" >&2
        # shellcheck disable=SC1090
        . "$hook"
    done
done

if [ -n "${JUPYTERHUB_API_TOKEN:-}" ]; then
    exec jupyterhub-singleuser "$@"
fi

has_flag() {
    local name="$1"; shift
    for arg in "$@"; do
        case "$arg" in "--$name"|"--$name="*|"--ServerApp.$name"|"--ServerApp.$name="*) return 0;; esac
    done
    return 1
}

# jupyter-lab itself, not `jupyter lab`: the launcher is one more Python start (~0.1 s here).
args=(--no-browser)
has_flag ip "$@" || args+=("--ip=0.0.0.0")
has_flag port "$@" || args+=("--port=${JUPYTER_PORT:-8888}")
has_flag root_dir "$@" || args+=("--ServerApp.root_dir=$root_dir")

if [ -n "${NB_PREFIX:-}" ]; then
    args+=(
        "--ServerApp.base_url=${NB_PREFIX}"
        "--IdentityProvider.token="
        "--ServerApp.password="
        "--ServerApp.allow_origin=*"
        '--ServerApp.tornado_settings={"headers":{"Content-Security-Policy":"frame-ancestors * '"'"'self'"'"'"}}'
    )
fi

exec jupyter-lab "${args[@]}" "$@"
