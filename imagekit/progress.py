"""Build progress: a live table on a terminal, plain prefixed log lines everywhere else."""

from __future__ import annotations

import re
import time
from types import TracebackType

from rich.console import Console
from rich.live import Live
from rich.table import Table

from imagekit.build import Outcome

_STEP = re.compile(r"^(#\d+ \[.*|Step \d+/\d+ : .*)")


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit in ("B", "KB") else f"{value:.2f} {unit}"
        value /= 1000
    return f"{size} B"


class PlainDisplay:
    def __init__(self, console: Console, verbose: bool = True) -> None:
        self.console = console
        self.verbose = verbose

    def __enter__(self) -> PlainDisplay:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def line(self, image: str, text: str) -> None:
        if self.verbose or _STEP.match(text):
            self.console.print(f"[{image}] {text}", markup=False, highlight=False)

    def status(self, outcome: Outcome) -> None:
        extra = f" ({outcome.seconds} s)" if outcome.status in ("built", "cached") else ""
        self.console.print(f"[{outcome.image}] {outcome.status}{extra}", markup=False)
        if outcome.error:
            self.console.print(outcome.error, markup=False, highlight=False)


class LiveDisplay:
    def __init__(self, console: Console, images: list[str]) -> None:
        self.console = console
        self.rows = {name: ["waiting", ""] for name in images}
        self.started: dict[str, float] = {}
        self.live = Live(self._table(), console=console, refresh_per_second=4, transient=False)

    def __enter__(self) -> LiveDisplay:
        self.live.__enter__()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.live.update(self._table())
        self.live.__exit__(kind, value, tb)

    def _table(self) -> Table:
        table = Table(box=None, show_header=True, header_style="bold")
        table.add_column("image")
        table.add_column("status")
        table.add_column("step", overflow="ellipsis", no_wrap=True, max_width=90)
        for name, (status, step) in self.rows.items():
            colour = {"built": "green", "cached": "cyan", "failed": "red",
                      "skipped": "yellow", "building": "bold"}.get(status, "dim")
            table.add_row(name, f"[{colour}]{status}[/]", step)
        return table

    def line(self, image: str, text: str) -> None:
        if _STEP.match(text):
            elapsed = time.monotonic() - self.started.get(image, time.monotonic())
            self.rows[image][1] = f"{elapsed:5.0f}s  {text}"
            self.live.update(self._table())

    def status(self, outcome: Outcome) -> None:
        if outcome.status == "building":
            self.started[outcome.image] = time.monotonic()
        self.rows[outcome.image] = [outcome.status, "" if outcome.status != "building" else
                                    self.rows[outcome.image][1]]
        self.live.update(self._table())
        if outcome.error:
            self.live.console.print(outcome.error, markup=False, highlight=False)


def summary(outcomes: list[Outcome]) -> Table:
    table = Table(title="build summary", header_style="bold")
    for col in ("image", "status", "size", "time", "tags"):
        table.add_column(col)
    for o in outcomes:
        tags = ", ".join(t.rpartition(":")[2] for t in o.tags)
        table.add_row(o.image, o.status, human_size(o.size) if o.size else "-",
                      f"{o.seconds:.1f} s" if o.seconds else "-", tags)
    return table
