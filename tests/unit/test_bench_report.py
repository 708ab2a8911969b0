"""Given one benchmark result set, the report says which targets it meets, from the medians
of the runs it holds (the measurements themselves need the engine: `make bench`)."""

from __future__ import annotations

from typing import Any

from bench import report


def _runs(*values: float) -> dict[str, Any]:
    ordered = sorted(values)
    return {"unit": "s", "runs": list(values), "median": ordered[len(ordered) // 2],
            "spread": 0.0}


RESULT: dict[str, Any] = {
    "date": "2026-11-30 06:00 UTC", "commit": "abc1234", "file": "bench/results/x.json",
    "machine": {"cpu": "cpu", "cores": "2", "memory": "24 GiB", "engine": "dockerd 20.10",
                "kernel": "6"},
    "catalog": {"cold_total": 1000.0, "cold_downloaded": 5e9, "warm": _runs(10, 12, 11),
                "warm_images_built": 0,
                "images": {"base": {"seconds": 60.0, "downloaded": 1e8, "size": 6e8}}},
    "three_ways": {"cold": {"imagekit": _runs(90), "hpccm": _runs(170), "hand": _runs(150)},
                   "rebuild": {"imagekit": _runs(8), "hpccm": _runs(100), "hand": _runs(60)},
                   "relock": _runs(2.5),
                   "downloaded": {"imagekit": _runs(1), "hpccm": _runs(1), "hand": _runs(1)},
                   "size": {"imagekit": 900, "hpccm": 1000, "hand": 950},
                   "packages": {"apt": ["python3"], "pip": ["numpy"]}},
    "incremental": {"base_unchanged": True, "scipy": _runs(15), "lock": _runs(5),
                    "would_rebuild": ["scipy"],
                    "label_change": {"seconds": 2.0, "layers_changed": 0}},
    "start": {"scipy": {"imagekit": _runs(1.0, 1.1, 0.9), "bare": _runs(1.0),
                        "hpccm": _runs(2.0), "hand": _runs(2.0)}},
    "sif": {"imagekit": _runs(30), "bare": _runs(90), "zstd": _runs(20),
            "size": {"imagekit": 101e6, "bare": 100e6, "zstd": 95e6},
            "phases": {"export_s": 5.0}, "zstd_squashfs_s": 4.0},
    "render": {"render": _runs(0.8, 0.9, 0.7), "import_cli": 0.4},
    "fresh_host": {"scipy": {"total": {"imagekit": _runs(6, 7, 8), "hpccm": _runs(10, 9, 11)},
                             "pull": {"imagekit": _runs(5), "hpccm": _runs(8)}},
                   "pytorch-cuda": {"total": {"imagekit": _runs(90), "hpccm": _runs(100)},
                                    "pull": {"imagekit": _runs(85), "hpccm": _runs(95)}},
                   "scipy_sif": {"pull": _runs(3), "total": _runs(6)},
                   "size": {"scipy": 300e6, "hpccm scipy": 400e6}},
    "errors": {},
}


def test_targets_follow_the_medians() -> None:
    met = {t.what: t.met for t in report.targets(RESULT)}
    assert met["warm no-op / cold build of the catalog"] is True  # 11 s of 1000 s
    assert met["rebuild after one change (the build alone) / hpccm's"] is True  # 0.08
    assert met["add a package as a user does (lock scipy, build scipy) / hpccm's rebuild"] \
        is True  # (2.5 + 8) / 100

    assert met["cold build / hpccm's"] is True  # 90 / 170
    assert met["image size / hpccm's"] is False  # 0.9 > 0.85
    assert met["start scipy: docker run to 200 / bare jupyter lab"] is True
    assert met["SIF time / docker export + mksquashfs"] is True  # 1/3
    assert met["imagekit render --all, whole process"] is True
    fresh = "on a fresh host: pull by digest + run to 200 / hpccm's image"
    assert met[f"scipy {fresh}"] is True  # 7 / 10
    assert met[f"pytorch-cuda {fresh}"] is False  # 0.9 > 0.8
    # What the run did not measure is said so, never counted as met.
    assert met["pytorch-cuda: rebuild above torch, MB received"] is None


def test_the_report_and_the_chart_show_every_ratio() -> None:
    text = report.markdown(RESULT, "chart.svg")
    x = report.RATIO
    assert (f"| 3 | rebuild after one change (the build alone) / hpccm's | 0.08{x} (8.0 s "
            f"against 100.0 s) | ≤ 0.10{x} | yes |") in text
    assert (f"| 3 | add a package as a user does (lock scipy, build scipy) / hpccm's rebuild "
            f"| 0.10{x} (2.5 s + 8.0 s against 100.0 s) | ≤ 0.15{x} | yes |") in text
    assert "imagekit's rebuild follows `imagekit lock scipy`, which took 2.50 s" in text
    assert "With `sif: {compression: zstd}` (level 3; Apptainer >= 1.4 only): 20.00 s" in text
    assert "→ 95 MB (squashfs 4.0 s)" in text
    assert "| scipy | hpccm | 400 MB | 8.00 s (n=1) | 10.00 s ±0 % (n=3) |" in text
    assert "`apptainer pull oras://...@sha256` 3.00 s (n=1)" in text
    svg = report.svg(RESULT)
    assert svg.count("<rect") == sum(1 for t in report.targets(RESULT)
                                     if t.unit == report.RATIO and t.value is not None)


def test_the_layers_item_shows_both_ways_and_that_docker_20_10_cannot_pull_zstd() -> None:
    found = {"push": {"gzip": {"scipy": _runs(16.9)}, "zstd": {"scipy": _runs(7.5)}},
             "size": {"gzip": {"scipy": 314e6}, "zstd": {"scipy": 295e6}},
             "total": {"gzip on docker 20.10": {"scipy": _runs(11.0)},
                       "gzip on docker 28": {"scipy": _runs(10.0)},
                       "zstd on docker 28": {"scipy": _runs(6.0)}}}
    text = report.markdown({**RESULT, "layers": found}, "")
    assert "## 12. Image layers" in text
    assert "| scipy | gzip | 16.90 s (n=1) | 314 MB | 11.00 s (n=1) | 10.00 s (n=1) |" in text
    assert "| scipy | zstd | 7.50 s (n=1) | 295 MB | cannot pull it | 6.00 s (n=1) |" in text


def test_a_partial_run_never_replaces_the_day_s_full_run() -> None:
    from bench.__main__ import ITEMS, result_name
    assert result_name(list(ITEMS), "2026-12-07") == "2026-12-07"
    assert result_name(["fresh_host"], "2026-12-07") == "fresh-host-2026-12-07"
    assert result_name(["layers", "three_ways"], "2026-12-07") == "three-ways-layers-2026-12-07"
