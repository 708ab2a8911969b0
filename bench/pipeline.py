"""Item 11 (`pipeline`): every buildable image built, tested, converted and published, the
way a site runs it, then the same again with nothing changed.

A copy of the project (its own namespace and a registry of the bench's own, started empty)
runs `imagekit build`, `imagekit test` and `imagekit publish` of every image buildable here
(rstudio is not: its .deb is unreachable), the build in each image's catalog formats (its
image, and its SIF where the catalog lists one), one after the other,
after its images are removed and BuildKit's cache pruned; then the three commands again.
The bootstrapped base image stays, as in item 1. Each command's wall time, the bytes the
machine received and the bytes `imagekit publish` sent are kept, with each image's share
(build and SIF seconds from `build --json`, the checks' seconds from `test --json`, seconds
and bytes sent from `publish --json`).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench.host import Watch, imagekit, prune_build_cache
from bench.scenarios import Log
from bench.workspace import Workspace
from tests.integration import suite
from tests.integration.registry import LocalRegistry

NAMESPACE = "bench-pipeline"
STEPS = (("build", ("build", "--plain", "--json")),
         ("test", ("test", "--json")),
         ("publish", ("publish", "--json")))


def pipeline(log: Log) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="imagekit-bench-pipeline-"))
    address = suite.free_address()
    registry = LocalRegistry(folder / "registry", address=address)
    ws = Workspace(NAMESPACE, registry=address)
    try:
        registry.start()
        ws.remove_images()
        prune_build_cache()
        result: dict[str, Any] = {"registry": address, "images": ws.buildable()}
        for run in ("first", "second"):
            result[run] = _run(ws, result["images"], run, log)
        return result
    finally:
        try:
            ws.close()
        finally:
            try:
                registry.stop()
            finally:
                shutil.rmtree(folder, ignore_errors=True)  # its blobs: gigabytes


def _run(ws: Workspace, images: list[str], run: str, log: Log) -> dict[str, Any]:
    steps: dict[str, Any] = {}
    per_image: dict[str, dict[str, float]] = defaultdict(dict)
    for step, argv in STEPS:
        with Watch() as watch:
            done = imagekit(ws.catalog, argv[0], *images, *argv[1:])
        said = json.loads(done.stdout)
        steps[step] = {"seconds": round(watch.seconds, 1), "received": watch.downloaded}
        if step == "build":
            for outcome in said["images"]:
                per_image[outcome["image"]]["build"] = outcome["seconds"]
                steps[step].setdefault("statuses", {})[outcome["image"]] = outcome["status"]
            for sif in said["sif"]:
                per_image[sif["image"]]["sif"] = sif["total_s"]
                steps[step].setdefault("sif_statuses", {})[sif["image"]] = sif["status"]
        elif step == "test":
            for check in said["results"]:
                seconds = per_image[check["image"]].get("test", 0.0) + check["seconds"]
                per_image[check["image"]]["test"] = round(seconds, 1)
            steps[step]["passed_before"] = [r["image"] for r in said["passed_before"]]
        else:
            for line in said["images"]:
                per_image[line["image"]]["publish"] = line["seconds"]
                per_image[line["image"]]["sent"] = line["sent"] + line["sif_sent"]
            steps[step]["sent"] = said["sent"]
        log(f"pipeline, {run} run: {step} {watch.seconds:.1f} s, "
            f"{watch.downloaded / 1e6:.0f} MB in")
    total = round(sum(s["seconds"] for s in steps.values()), 1)
    log(f"pipeline, {run} run: {total} s in all")
    return {"steps": steps, "images": dict(per_image), "total": total}
