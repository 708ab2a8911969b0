"""Checks of built images: the static ones (imports, commands, kernels, executions) and the
runtime contract of each consumer (checks/contract.py), each a small function that returns
its evidence; `imagekit test`'s door is checks.runner.test (test_images saves each image's
test record). It starts and stops containers through the engine only, and may import the
engine, the model and what lies below them, never a build, a SIF or publishing."""

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
