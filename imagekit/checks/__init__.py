"""Smoke and runtime-contract checks of built images, each a small function with evidence."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CheckResult:
    image: str
    name: str
    ok: bool
    evidence: str
    seconds: float = 0.0


class CheckFailed(Exception):
    """Raised inside a check with the evidence of what was seen instead."""
