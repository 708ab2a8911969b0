#!/usr/bin/env bash
# Measure imagekit's SIF conversion against the bare way of doing it by hand:
# `docker export` + `mksquashfs -comp gzip` at its default level (9), for one built image.
# Usage: scripts/sif-vs-bare.sh IMAGE   (the image must be built: imagekit build IMAGE)
set -euo pipefail
image="${1:?usage: $0 IMAGE}"
ref="$(imagekit list --json | python3 -c "import json,sys; print(next(r['ref'] for r in json.load(sys.stdin) if r['name']=='$image'))")"
work="$(mktemp -d "${TMPDIR:-/tmp}/imagekit-bare-XXXX")"
trap 'rm -rf "$work"' EXIT

docker_size="$(docker image inspect -f '{{.Size}}' "$ref")"
start=$(date +%s.%N)
cid="$(docker create "$ref" /bin/true)"
mkdir "$work/rootfs"
docker export "$cid" | tar -x -p --numeric-owner -C "$work/rootfs"
docker rm -f "$cid" >/dev/null
mid=$(date +%s.%N)
mksquashfs "$work/rootfs" "$work/bare.sqfs" -noappend -comp gzip -no-progress -quiet
end=$(date +%s.%N)
bare_size="$(stat -c %s "$work/bare.sqfs")"

rm -f dist/"${image}"_*.sif.json   # convert again; the Docker image stays as it is
imagekit build "$image" --format sif --sif-method native --json > "$work/sif.json" 2>/dev/null
python3 - "$work/sif.json" "$docker_size" "$bare_size" "$start" "$mid" "$end" <<'PY'
import json, sys
report, docker_size, bare_size, start, mid, end = sys.argv[1:]
sif = json.load(open(report))["sif"][0]
mb = lambda n: f"{int(n) / 1e6:.0f} MB"
print(f"image {sif['image']}: docker image {mb(docker_size)}")
print(f"  bare export+mksquashfs (gzip 9): {float(end) - float(start):.1f} s "
      f"(export {float(mid) - float(start):.1f} s, squashfs {float(end) - float(mid):.1f} s), "
      f"{mb(bare_size)}")
print(f"  imagekit SIF (gzip {6}):          {sif['total_s']:.1f} s (export {sif['export_s']} s, "
      f"squashfs {sif['squashfs_s']} s, assemble {sif['assemble_s']} s), {mb(sif['size'])}")
PY
