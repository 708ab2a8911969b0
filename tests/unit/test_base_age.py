"""Given a catalog with `base.max_age_days`, a base older than that is called stale."""

from __future__ import annotations

import dataclasses
import datetime as dt

from imagekit.engine.base import staleness
from imagekit.engine.client import ImageInfo
from imagekit.model import Catalog

NOW = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)


def _info(created: str) -> ImageInfo:
    return ImageInfo("sha256:1", {}, 0, (), "amd64", (), (), (), created)


def _limit(catalog: Catalog, days: int | None) -> Catalog:
    return dataclasses.replace(catalog, base=dataclasses.replace(catalog.base,
                                                                 max_age_days=days))


def test_a_base_older_than_the_limit_is_stale(catalog: Catalog) -> None:
    message = staleness(_limit(catalog, 30), _info("2026-10-01T08:00:00.123456789Z"), NOW)
    assert message is not None
    assert "base.max_age_days" in message and "52 days old (at most 30)" in message
    assert "imagekit base --refresh" in message


def test_a_fresh_base_or_no_limit_is_fine(catalog: Catalog) -> None:
    assert staleness(_limit(catalog, 30), _info("2026-11-20T08:00:00Z"), NOW) is None
    assert staleness(_limit(catalog, None), _info("2020-01-01T00:00:00Z"), NOW) is None
    assert staleness(_limit(catalog, 30), _info("2026-10-01T10:00:00+02:00"), NOW) is not None
