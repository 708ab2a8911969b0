"""One result set (JSON) to the targets it meets, `BENCHMARKS.md` and a chart (SVG)."""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

RATIO = "\N{MULTIPLICATION SIGN}"


@dataclass(frozen=True)
class Target:
    item: str
    what: str
    value: float | None  # the measured ratio or figure
    limit: float
    unit: str = RATIO  # ratios; or s, MB, or "" for counts
    detail: str = ""

    @property
    def met(self) -> bool | None:
        return None if self.value is None else self.value <= self.limit

    def shown(self, number: float | None) -> str:
        if number is None:
            return "not measured"
        if self.unit == RATIO:
            return f"{number:.2f}{RATIO}"
        return f"{number:g} {self.unit}".strip()


def _median(result: dict[str, Any], *path: str) -> float | None:
    node: Any = result
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    if isinstance(node, dict):
        value = node.get("median")
        return float(value) if value is not None else None
    return float(node) if isinstance(node, int | float) else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def targets(result: dict[str, Any]) -> list[Target]:
    found: list[Target] = []
    catalog = result.get("catalog", {})
    three = result.get("three_ways", {})
    cold_total = catalog.get("cold_total")
    warm = _median(catalog, "warm")
    found.append(Target("2", "warm no-op: images rebuilt", catalog.get("warm_images_built"), 0,
                        "", "imagekit build of every CI image, nothing changed"))
    found.append(Target("2", "warm no-op / cold build of the catalog",
                        _ratio(warm, cold_total), 0.02,
                        detail=f"{warm} s against {cold_total} s"))
    inc = result.get("incremental", {})
    found.append(Target("3", "add a pip package to scipy: base's image changed",
                        None if "base_unchanged" not in inc else float(not inc["base_unchanged"]),
                        0, ""))
    rebuilt, hpccm = _median(three, "rebuild", "imagekit"), _median(three, "rebuild", "hpccm")
    relocked = _median(three, "relock")
    by_hand = None if rebuilt is None or relocked is None else round(rebuilt + relocked, 3)
    found.append(Target("3", "add a package as a user does (lock scipy, build scipy) / "
                        "hpccm's rebuild", _ratio(by_hand, hpccm), 0.15,
                        detail=f"{relocked} s + {rebuilt} s against {hpccm} s"))
    found.append(Target("3", "rebuild after one change (the build alone) / hpccm's",
                        _ratio(rebuilt, hpccm), 0.10, detail=f"{rebuilt} s against {hpccm} s"))
    label = inc.get("label_change", {})
    found.append(Target("3", "description changed: filesystem layers rebuilt",
                        label.get("layers_changed"), 0, ""))
    found.append(Target("4", "cold build / hpccm's",
                        _ratio(_median(three, "cold", "imagekit"),
                               _median(three, "cold", "hpccm")), 0.6,
                        detail=f"{_median(three, 'cold', 'imagekit')} s against "
                               f"{_median(three, 'cold', 'hpccm')} s"))
    sizes = three.get("size", {})
    found.append(Target("4", "image size / hpccm's",
                        _ratio(sizes.get("imagekit"), sizes.get("hpccm")), 0.85,
                        detail=f"{_mb(sizes.get('imagekit'))} against {_mb(sizes.get('hpccm'))}"))
    for stack, ways in result.get("start", {}).items():
        found.append(Target("5", f"start {stack}: docker run to 200 / bare jupyter lab",
                            _ratio(_median(ways, "imagekit"), _median(ways, "bare")), 1.05,
                            detail=f"{_median(ways, 'imagekit')} s against "
                                   f"{_median(ways, 'bare')} s"))
        if "hpccm" in ways:
            found.append(Target("5", f"start {stack}: imagekit / jupyter lab in hpccm's image",
                                _ratio(_median(ways, "imagekit"), _median(ways, "hpccm")),
                                0.9, detail=f"against {_median(ways, 'hpccm')} s"))
    sif = result.get("sif", {})
    found.append(Target("6", "SIF time / docker export + mksquashfs",
                        _ratio(_median(sif, "imagekit"), _median(sif, "bare")), 0.4,
                        detail=f"{_median(sif, 'imagekit')} s against "
                               f"{_median(sif, 'bare')} s"))
    size = sif.get("size", {})
    found.append(Target("6", "SIF size / the bare way's",
                        _ratio(size.get("imagekit"), size.get("bare")), 1.02,
                        detail=f"{_mb(size.get('imagekit'))} against {_mb(size.get('bare'))}"))
    found.append(Target("7", "imagekit render --all, whole process",
                        _median(result, "render", "render"), 1.0, "s"))
    cuda = result.get("pytorch_cuda", {})
    rebuild = cuda.get("rebuild_above_torch", {})
    received = rebuild.get("downloaded")
    found.append(Target("8", "pytorch-cuda: rebuild above torch, MB received",
                        None if received is None else round(received / 1e6, 1), 100, "MB",
                        detail=f"{rebuild.get('seconds')} s"))
    tags = cuda.get("tags", [])
    found.append(Target("8", "pytorch-cuda: tagged cuda-X.Y",
                        None if not cuda else float(not any(t.startswith("cuda-") for t in tags)),
                        0, "", detail=" ".join(t for t in tags if t.startswith("cuda-"))))
    fresh = result.get("fresh_host", {})
    for image in ("scipy", "pytorch-cuda"):
        mine, theirs = (_median(fresh, image, "total", way) for way in ("imagekit", "hpccm"))
        found.append(Target("10", f"{image} on a fresh host: pull by digest + run to 200 / "
                                  "hpccm's image", _ratio(mine, theirs), 0.8,
                            detail=f"{mine} s against {theirs} s"))
    flow = result.get("pipeline", {})
    for run, what, limit in (("first", "every buildable image built, tested, converted and "
                                       "published (cold)", 720),
                             ("second", "the same again, nothing changed", 20)):
        steps = flow.get(run, {}).get("steps", {})
        found.append(Target("11", what, flow.get(run, {}).get("total"), limit, "s",
                            detail=", ".join(f"{step} {s['seconds']} s"
                                             for step, s in steps.items())))
    return found


def _mb(size: float | None) -> str:
    return "?" if size is None else f"{size / 1e6:.0f} MB"


def _s(node: dict[str, Any] | None) -> str:
    if not node or node.get("median") is None:
        return "not measured"
    spread = f" ±{node['spread'] * 50:.0f} %" if len(node.get("runs", [])) > 1 else ""
    return f"{node['median']:.2f} s{spread} (n={len(node.get('runs', []))})"


def markdown(result: dict[str, Any], chart: str) -> str:
    machine = result["machine"]
    out = [
        "# Benchmarks",
        "",
        "Generated by `make bench` (`python3 -m bench`) from "
        f"`{result['file']}`: do not edit by hand.",
        "",
        f"Run on {result['date']} at commit `{result['commit']}`: {machine['cpu']}, "
        f"{machine['cores']} cores, {machine['memory']}, {machine['engine']} (BuildKit), "
        f"kernel {machine['kernel']}. The machine is shared: each figure is the median of "
        f"the runs shown (n), ± half the spread between the fastest and the slowest.",
        "",
        "## How to read it",
        "",
        "- Ratios are imagekit's median over the alternative's median, both taken in this "
        "run; below 1 is better for imagekit. A target is met when the ratio is at or "
        "below its limit.",
        "- *Cold*: no BuildKit cache (pruned before each build), the bootstrapped base "
        "present; item 4 builds each way once, untimed, before its timed runs. *Rebuild*: "
        "one pip package added, every earlier layer in the cache.",
        "- *Start*: `docker run` to the first HTTP 200 from `/api/status` with the token; "
        "*bare* is `jupyter lab` started directly in the same image, without the start "
        "script.",
        "- *Bytes received*: counted by the kernel on the machine's network interfaces.",
        "",
        f"![targets]({chart})",
        "",
        "## Targets",
        "",
        "| item | what | measured | target | met |",
        "| --- | --- | --- | --- | --- |",
    ]
    for target in targets(result):
        met = {True: "yes", False: "**no**", None: "not measured"}[target.met]
        detail = f" ({target.detail})" if target.detail and target.value is not None else ""
        out.append(f"| {target.item} | {target.what} | {target.shown(target.value)}{detail} "
                   f"| ≤ {target.shown(target.limit)} | {met} |")
    catalog = result.get("catalog", {})
    if catalog.get("images"):
        out += ["", "## 1. Cold build of the catalog (every image CI builds)", "",
                "| image | seconds | received | size |", "| --- | --- | --- | --- |"]
        for name, image in catalog["images"].items():
            out.append(f"| {name} | {image['seconds']} | {_mb(image['downloaded'])} "
                       f"| {_mb(image['size'])} |")
        out.append(f"| **total** | {catalog['cold_total']} | "
                   f"{_mb(catalog['cold_downloaded'])} | |")
        out += ["", f"Warm no-op (`imagekit build` of the same images again): "
                f"{_s(catalog.get('warm'))}, {catalog.get('warm_images_built')} images built."]
    three = result.get("three_ways")
    if three:
        out += ["", "## 4. One package set three ways (imagekit's scipy, hpccm, by hand)", "",
                "| | cold build | rebuild after one change | image size | received (cold) |",
                "| --- | --- | --- | --- | --- |"]
        for way in ("imagekit", "hpccm", "hand"):
            out.append(f"| {way} | {_s(three['cold'].get(way))} | "
                       f"{_s(three['rebuild'].get(way))} | {_mb(three['size'].get(way))} | "
                       f"{_mb(_median(three, 'downloaded', way))} |")
        out += ["", f"imagekit's rebuild follows `imagekit lock scipy`, which took "
                f"{_s(three.get('relock'))} (hpccm and the hand-written Dockerfile have no "
                "lock).", "", f"Packages: apt {', '.join(three['packages']['apt'])}; pip "
                f"{', '.join(three['packages']['pip'])}."]
    inc = result.get("incremental")
    if inc:
        out += ["", "## 3. Incremental", "",
                f"- One pip package added to `scipy`: `imagekit build scipy` rebuilt scipy in "
                f"{_s(inc.get('scipy'))}; relocking took {_s(inc.get('lock'))}. base's image "
                f"ID unchanged: {inc.get('base_unchanged')}. `build --all --dry-run` plans "
                f"to rebuild: {', '.join(inc.get('would_rebuild', []))}.",
                f"- Description changed: scipy rebuilt in {inc['label_change']['seconds']} s, "
                f"{inc['label_change']['layers_changed']} filesystem layers changed."]
    start = result.get("start")
    if start:
        out += ["", "## 5. Start latency (`docker run` to the first 200)", "",
                "| image | imagekit | bare `jupyter lab` | hpccm image | hand image |",
                "| --- | --- | --- | --- | --- |"]
        for stack, ways in start.items():
            out.append(f"| {stack} | {_s(ways.get('imagekit'))} | {_s(ways.get('bare'))} | "
                       f"{_s(ways.get('hpccm'))} | {_s(ways.get('hand'))} |")
    sif = result.get("sif")
    if sif:
        out += ["", "## 6. SIF (scipy)", "",
                f"imagekit `build --format sif` (native): {_s(sif.get('imagekit'))} → "
                f"{_mb(sif['size'].get('imagekit'))} (median phases: "
                + ", ".join(f"{k} {v} s" for k, v in sif.get("phases", {}).items())
                + f"); `docker export` + `mksquashfs -comp gzip`: {_s(sif.get('bare'))} → "
                f"{_mb(sif['size'].get('bare'))}."]
        if sif.get("zstd"):
            out += ["", f"With `sif: {{compression: zstd}}` (level 3; Apptainer >= 1.4 only): "
                        f"{_s(sif.get('zstd'))} → {_mb(sif['size'].get('zstd'))} (squashfs "
                        f"{sif.get('zstd_squashfs_s')} s)."]
    render = result.get("render")
    if render:
        out += ["", "## 7. Render", "",
                f"`imagekit render --all` as a whole process: {_s(render.get('render'))}; "
                f"importing the CLI alone: {render.get('import_cli')} s."]
    cuda = result.get("pytorch_cuda")
    if cuda:
        cold = cuda.get("cold") or {}
        rebuild = cuda.get("rebuild_above_torch", {})
        csif = cuda.get("sif", {})
        out += ["", "## 8. `imagekit build pytorch-cuda`", "",
                f"- Cold (scipy cached): {cold.get('seconds')} s, {_mb(cold.get('downloaded'))} "
                f"received, image {_mb(cold.get('size'))}; tags: {', '.join(cuda['tags'])}.",
                f"- SIF: {_s(csif.get('imagekit'))} → {_mb(csif.get('size', {}).get('imagekit'))}"
                f"; the bare way {_s(csif.get('bare'))} → "
                f"{_mb(csif.get('size', {}).get('bare'))}; with zstd "
                f"{_s(csif.get('zstd'))} → {_mb(csif.get('size', {}).get('zstd'))}.",
                f"- One pip package added to pytorch-cuda (above torch): rebuilt in "
                f"{rebuild.get('seconds')} s, {_mb(rebuild.get('downloaded'))} received."]
    eng = result.get("engines")
    if eng:
        out += ["", "## 9. The scipy image on three engines", "",
                f"{eng['versions']['docker']} (BuildKit) and {eng['versions']['podman']} "
                "(buildah), rootful and rootless (native overlay storage): scipy and its "
                "parent built cold, then rebuilt after one pip package is added to scipy.", "",
                "| engine | cold (base + scipy) | rebuild after one change |",
                "| --- | --- | --- |"]
        for way in eng["cold"]:
            out.append(f"| {way} | {_s(eng['cold'][way])} | {_s(eng['rebuild'].get(way))} |")
    fresh = result.get("fresh_host")
    if fresh:
        out += ["", "## 10. The first start on a fresh host", "",
                "`docker pull REPOSITORY@sha256:...` and `docker run` to the first 200, on a "
                "second dockerd started empty for every pull, from a registry of the bench's "
                "own; imagekit's images as `imagekit publish` pushed them, hpccm's of the same "
                "packages pushed by the same engine.", "",
                "| image | way | pulled (compressed) | pull | pull + run to 200 |",
                "| --- | --- | --- | --- | --- |"]
        for image in ("scipy", "pytorch-cuda"):
            for way in ("imagekit", "hpccm"):
                if image in fresh:
                    name = image if way == "imagekit" else f"{way} {image}"
                    out.append(f"| {image} | {way} | {_mb(fresh.get('size', {}).get(name))} | "
                               f"{_s(fresh[image]['pull'].get(way))} | "
                               f"{_s(fresh[image]['total'].get(way))} |")
        sif_fresh = fresh.get("scipy_sif")
        if sif_fresh:
            out += ["", "scipy's SIF under Apptainer 1.4.5, as an unprivileged user with an "
                        "empty cache: `apptainer pull oras://...@sha256` "
                        f"{_s(sif_fresh.get('pull'))}; pull + `apptainer run` to the first "
                        f"200 {_s(sif_fresh.get('total'))}; {_mb(sif_fresh.get('size'))}."]
    out += _pipeline(result.get("pipeline"))
    out += _layers(result.get("layers"))
    errors = result.get("errors", {})
    if errors:
        out += ["", "## Not measured in this run", ""]
        out += [f"- {item}: {html.escape(text.splitlines()[0])}" for item, text in errors.items()]
    return "\n".join(out) + "\n"


def _pipeline(flow: dict[str, Any] | None) -> list[str]:
    if not flow or "first" not in flow:
        return []
    first, second = flow["first"], flow.get("second", {})
    out = ["", "## 11. The whole pipeline: build, test, SIF, publish", "",
           "`imagekit build`, `test` and `publish` of every image buildable here (the build in "
           "each image's catalog formats) in a copy of the project, its images removed and "
           "BuildKit's cache pruned "
           "(the bootstrapped base kept, as in item 1), into an empty registry of the bench's "
           "own; then the same three commands with nothing changed.", "",
           "| step | cold | nothing changed | received (cold) | sent (cold) |",
           "| --- | --- | --- | --- | --- |"]
    for step in ("build", "test", "publish"):
        cold, again = first["steps"][step], second.get("steps", {}).get(step, {})
        out.append(f"| {step} | {cold['seconds']} s | {again.get('seconds', '?')} s | "
                   f"{_mb(cold['received'])} | {_mb(cold.get('sent'))} |")
    out.append(f"| **total** | **{first['total']} s** | **{second.get('total', '?')} s** | | |")
    out += ["", "Each image's share of the cold run (seconds; bytes sent to the registry):", "",
            "| image | build | SIF | test | publish | sent |",
            "| --- | --- | --- | --- | --- | --- |"]
    for image, phases in first["images"].items():
        cells = [str(phases.get(p, "-")) for p in ("build", "sif", "test", "publish")]
        out.append(f"| {image} | {' | '.join(cells)} | {_mb(phases.get('sent'))} |")
    reused = second.get("steps", {}).get("test", {}).get("passed_before", [])
    if second:
        built = [i for i, s in second["steps"]["build"].get("statuses", {}).items()
                 if s == "built"]
        out += ["", f"With nothing changed: {len(built)} images built, "
                    f"{len(reused)} of {len(first['images'])} not tested again (passed "
                    f"before), {_mb(second['steps']['publish'].get('sent'))} sent."]
    return out


def _layers(found: dict[str, Any] | None) -> list[str]:
    if not found or "push" not in found:
        return []
    out = ["", "## 12. Image layers: gzip (the engine's push) against zstd (imagekit's)", "",
           "scipy and pytorch-cuda, built and tested once, then `imagekit publish` of both "
           "into an emptied registry of the bench's own, with an empty layer index (a "
           "machine's first push), each way in turn; then `docker pull` by digest and "
           "`docker run` to the first 200 on an engine started empty for every pull (Docker "
           "20.10 cannot read zstd layers).", "",
           "| image | layers | push (publish's own time) | in the registry | "
           "pull + run to 200, empty Docker 20.10 | the same, empty Docker 28 |",
           "| --- | --- | --- | --- | --- | --- |"]
    for image in ("scipy", "pytorch-cuda"):
        for way in ("gzip", "zstd"):
            on = {host: found["total"].get(f"{way} on docker {host}", {}).get(image)
                  for host in ("20.10", "28")}
            out.append(f"| {image} | {way} | {_s(found['push'][way].get(image))} | "
                       f"{_mb(found['size'][way].get(image))} | "
                       f"{_s(on['20.10']) if on['20.10'] else 'cannot pull it'} | "
                       f"{_s(on['28'])} |")
    return out


def svg(result: dict[str, Any]) -> str:
    """A bar per ratio target: the measured ratio against its limit (the tick)."""
    rows = [t for t in targets(result) if t.unit == RATIO and t.value is not None]
    width, left, bar_w, row_h = 760, 330, 380, 24
    scale = bar_w / max([1.6, *[t.value or 0 for t in rows]])
    height = 40 + row_h * len(rows)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'font-family="sans-serif" font-size="12">',
             f'<text x="8" y="18" font-weight="bold">imagekit / alternative (lower is better;'
             f' tick = target) — {html.escape(result["date"])}</text>']
    for i, target in enumerate(rows):
        y = 32 + i * row_h
        value = target.value or 0.0
        colour = "#2e7d32" if target.met else "#c62828"
        parts += [
            f'<text x="8" y="{y + 14}">{html.escape(target.what[:48])}</text>',
            f'<rect x="{left}" y="{y + 3}" width="{value * scale:.1f}" height="{row_h - 8}" '
            f'fill="{colour}"/>',
            f'<line x1="{left + target.limit * scale:.1f}" x2="{left + target.limit * scale:.1f}"'
            f' y1="{y}" y2="{y + row_h - 2}" stroke="#000" stroke-width="2"/>',
            f'<text x="{left + value * scale + 6:.1f}" y="{y + 14}">{value:.2f}{RATIO}</text>']
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
