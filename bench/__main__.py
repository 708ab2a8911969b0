"""`python3 -m bench [run] [--repeats N] [--starts N] [--only ITEM...]`: measure, then write
`bench/results/<date>.json`, `BENCHMARKS.md` and `bench/results/chart.svg`.
`python3 -m bench report [JSON]`: write the last two again from a result set."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import engines, fresh, layers, pipeline, report, scenarios
from bench.host import HAND_AND_HPCCM, ROOT, machine, prune_build_cache, remove_images, run
from bench.workspace import Workspace

RESULTS = ROOT / "bench" / "results"
ITEMS = ("three_ways", "catalog", "start", "render", "sif", "pytorch_cuda", "incremental",
         "fresh_host", "engines", "pipeline", "layers")
# The items that use the run's workspace (its images, SIFs and BuildKit cache) or the hand
# and hpccm images; the items after them make their own, and the disk they need is tens of GB.
SHARED = ("three_ways", "catalog", "start", "render", "sif", "pytorch_cuda", "incremental")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m bench", description=__doc__)
    parser.add_argument("command", nargs="?", default="run", choices=("run", "report"))
    parser.add_argument("json", nargs="?", type=Path, help="report: the result set")
    parser.add_argument("--repeats", type=int, default=3,
                        help="runs of each build, rebuild and SIF comparison (default 3)")
    parser.add_argument("--starts", type=int, default=7,
                        help="server starts per image and way (default 7)")
    parser.add_argument("--only", nargs="+", choices=ITEMS, default=list(ITEMS),
                        help="some items only: the JSON is written, BENCHMARKS.md is not")
    parser.add_argument("--name", help="the result file's name (default: the date)")
    args = parser.parse_args(argv)
    if args.command == "report":
        source = args.json or max(RESULTS.glob("*.json"))
        write_report(json.loads(source.read_text()), source)
        return 0
    return measure(args.only, scenarios.Settings(repeats=args.repeats, starts=args.starts,
                                                 catalog_cold="catalog" in args.only),
                   args.name)


def measure(only: list[str], settings: scenarios.Settings, name: str | None = None) -> int:
    started = time.monotonic()

    def log(line: str) -> None:
        print(f"[{time.monotonic() - started:7.0f} s] {line}", flush=True)

    commit = run(["git", "rev-parse", "--short", "HEAD"], check=False).stdout.strip()
    result: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"), "commit": commit,
        "machine": machine(), "settings": vars(settings), "errors": {}}
    ws = Workspace("bench")
    steps: dict[str, Callable[[], dict[str, Any]]] = {
        "three_ways": lambda: scenarios.three_ways(settings, log),
        "catalog": lambda: scenarios.catalog_cold_and_warm(ws, settings, log),
        "start": lambda: scenarios.start_latency(ws, settings, log),
        "render": lambda: scenarios.render(ws, settings, log),
        "sif": lambda: scenarios.sif(ws, settings, log),
        "pytorch_cuda": lambda: scenarios.pytorch_cuda(ws, result.get("catalog", {}), log),
        "incremental": lambda: scenarios.incremental(ws, settings, log),
        "fresh_host": lambda: fresh.fresh_host(settings, log),
        "engines": lambda: engines.engines(settings.repeats, log),
        "pipeline": lambda: pipeline.pipeline(log),
        "layers": lambda: layers.layers(settings, log),
    }
    last_shared = max((ITEMS.index(i) for i in only if i in SHARED), default=-1)
    try:
        for index, item in enumerate(ITEMS):
            if item not in only:
                continue
            log(f"{item} ...")
            try:
                result[item] = steps[item]()
            except Exception as exc:
                result["errors"][item] = f"{type(exc).__name__}: {exc}"
                log(f"{item} failed:\n{traceback.format_exc()}")
            if index == last_shared:
                try:
                    release(ws)
                except Exception as exc:  # the items after it may still have the disk
                    result["errors"]["release"] = f"{type(exc).__name__}: {exc}"
                    log(f"releasing the shared workspace failed:\n{traceback.format_exc()}")
    finally:
        release(ws)
    result["seconds"] = round(time.monotonic() - started)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{name or result_name(only, result['date'][:10])}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    if set(only) == set(ITEMS):
        write_report(result, out)
        log(f"wrote {out.relative_to(ROOT)}, BENCHMARKS.md and bench/results/chart.svg")
    else:
        print_targets(result)
        log(f"wrote {out.relative_to(ROOT)} (a partial run: BENCHMARKS.md left as it is)")
    return 1 if result["errors"] else 0


def result_name(only: list[str], day: str) -> str:
    """The results file of a run: the day's for a full run; a partial run's is named after
    its items too (fresh-host-2026-12-07), so that it never replaces the day's full run."""
    if set(only) == set(ITEMS):
        return day
    return "-".join(i.replace("_", "-") for i in ITEMS if i in only) + f"-{day}"


def release(ws: Workspace) -> None:
    """The shared workspace's images, SIFs and build cache, and the hand and hpccm images,
    given back to the disk: once the last item that uses them has run (the items after them
    start from a pruned cache of their own), and at the end. A second call finds nothing."""
    ws.close()
    remove_images(*HAND_AND_HPCCM)
    prune_build_cache()


def write_report(result: dict[str, Any], source: Path) -> None:
    result = {**result, "file": str(source.relative_to(ROOT))}
    (RESULTS / "chart.svg").write_text(report.svg(result))
    (ROOT / "BENCHMARKS.md").write_text(report.markdown(result, "bench/results/chart.svg"))
    print_targets(result)


def print_targets(result: dict[str, Any]) -> None:
    for target in report.targets(result):
        met = {True: "met", False: "MISSED", None: "not measured"}[target.met]
        print(f"  [{target.item}] {target.what}: {target.shown(target.value)} "
              f"(target ≤ {target.shown(target.limit)}) {met}")


if __name__ == "__main__":
    sys.exit(main())
