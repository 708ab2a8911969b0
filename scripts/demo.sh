#!/usr/bin/env bash
# `make demo`: the whole path on the embedded default, with the engine already running
# (scripts/engine.sh --keep): a local registry, the bootstrapped base, the default image built
# (and its SIF), smoke-tested, published by digest, and every consumer's export written.
set -euo pipefail
cd "$(dirname "$0")/.."
image="${1:-scipy}"
scripts/registry.sh start
imagekit validate
imagekit base
imagekit build "$image"
imagekit test "$image"
imagekit publish "$image"
ref="$(python3 - "$image" <<'PY'
import json, sys
catalog = json.load(open("dist/catalog.json"))
print(next(i["reference"] for i in catalog["images"] if i["name"] == sys.argv[1]))
PY
)"
cat <<EOF2

Published: the registry on 127.0.0.1:5055 holds $image by digest; dist/catalog.json is the
catalog, dist/exports/ has what KubeSpawner, DockerSpawner, Kubeflow, the Setting,
batchspawner and Armada read (\`imagekit export TARGET\` prints one).
Open it:  docker run --rm -p 127.0.0.1:8888:8888 $ref
          then the http://127.0.0.1:8888/lab?token=... URL it prints.
Stop the engine and the registry with: make stop
EOF2
