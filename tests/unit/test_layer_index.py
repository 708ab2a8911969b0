"""The layer index: which zstd blob each layer became, kept in the user's cache."""

from __future__ import annotations

import json
from pathlib import Path

import zstandard

from imagekit.publish.layers import Blob, LayerIndex

LAYER = "sha256:" + "a" * 64
OTHER = "sha256:" + "b" * 64
BLOB = Blob("sha256:" + "c" * 64, 10, 100)


def test_an_index_is_per_level_and_zstd_library(tmp_path: Path) -> None:
    index = LayerIndex(3, tmp_path)
    assert index.path == tmp_path / f"zstd-3-{zstandard.__version__}.json"
    assert LayerIndex(5, tmp_path).path != index.path


def test_what_is_recorded_is_found_again_with_where_it_went(tmp_path: Path) -> None:
    index = LayerIndex(3, tmp_path)
    index.record(LAYER, BLOB, "r/a")
    index.record(LAYER, BLOB, "r/b")
    index.save()
    again = LayerIndex(3, tmp_path)
    assert again.blob(LAYER) == BLOB
    assert again.repositories(LAYER) == ["r/b", "r/a"]  # the newest first
    assert again.blob(OTHER) is None and again.repositories(OTHER) == []


def test_another_blob_for_a_layer_forgets_where_the_old_one_went(tmp_path: Path) -> None:
    index = LayerIndex(3, tmp_path)
    index.record(LAYER, BLOB, "r/a")
    index.record(LAYER, Blob("sha256:" + "d" * 64, 11, 100), "r/b")
    assert index.repositories(LAYER) == ["r/b"]


def test_saving_keeps_what_another_imagekit_saved_meanwhile(tmp_path: Path) -> None:
    mine, theirs = LayerIndex(3, tmp_path), LayerIndex(3, tmp_path)
    theirs.record(OTHER, BLOB, "r/theirs")
    theirs.save()
    mine.record(LAYER, BLOB, "r/mine")
    mine.save()
    merged = LayerIndex(3, tmp_path)
    assert merged.blob(LAYER) == BLOB and merged.blob(OTHER) == BLOB
    assert [p.name for p in tmp_path.iterdir()] == [mine.path.name]  # no partial file left


def test_two_imagekits_that_pushed_the_same_blob_keep_both_repositories(tmp_path: Path) -> None:
    mine, theirs = LayerIndex(3, tmp_path), LayerIndex(3, tmp_path)
    theirs.record(LAYER, BLOB, "r/theirs")
    theirs.save()
    mine.record(LAYER, BLOB, "r/mine")
    mine.save()
    assert LayerIndex(3, tmp_path).repositories(LAYER) == ["r/mine", "r/theirs"]


def test_an_unreadable_index_is_an_empty_one(tmp_path: Path) -> None:
    index = LayerIndex(3, tmp_path)
    index.path.write_text("{not json")
    assert LayerIndex(3, tmp_path).blob(LAYER) is None
    index.path.write_text(json.dumps({LAYER: {"digest": 5}, OTHER: "x"}))
    reread = LayerIndex(3, tmp_path)
    assert reread.blob(LAYER) is None and reread.blob(OTHER) is None


def test_nothing_changed_writes_nothing(tmp_path: Path) -> None:
    index = LayerIndex(3, tmp_path)
    index.record(LAYER, BLOB, "r/a")
    index.save()
    stamp = index.path.stat().st_mtime_ns
    again = LayerIndex(3, tmp_path)
    again.record(LAYER, BLOB, "r/a")
    again.save()
    assert index.path.stat().st_mtime_ns == stamp
