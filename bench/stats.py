"""Several runs of one measurement: median and spread, and ratios of medians."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Sample:
    """Runs of one measurement (seconds or bytes)."""

    unit: str = "s"
    values: list[float] = field(default_factory=list)

    def add(self, value: float) -> float:
        self.values.append(value)
        return value

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")

    @property
    def spread(self) -> float:
        """(max - min) / median: how far apart the runs were, as a fraction."""
        if len(self.values) < 2 or not self.median:
            return 0.0
        return (max(self.values) - min(self.values)) / self.median

    def as_dict(self) -> dict[str, Any]:
        if not self.values:
            return {"unit": self.unit, "runs": [], "median": None, "spread": 0.0}
        return {"unit": self.unit, "runs": [round(v, 3) for v in self.values],
                "median": round(self.median, 3), "spread": round(self.spread, 3)}


def ratio(mine: Sample, theirs: Sample) -> float:
    return round(mine.median / theirs.median, 3) if theirs.median else float("nan")
