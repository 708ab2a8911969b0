"""What long steps show as they go: a build's live table on a terminal (plain prefixed log
lines everywhere else), and a test's PASS/FAIL lines with their evidence."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from types import TracebackType

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from imagekit.build import Display, Outcome
from imagekit.checks import CheckResult

_STEP = re.compile(r"^(#\d+ \[.*|Step \d+/\d+ : .*)")


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


def build_display(console: Console, plain: bool) -> Callable[[list[str]], Display]:
    """A build's display for the images in `order`: the live table on a terminal, else (or
    `plain`) log lines."""
    live = console.is_terminal and not plain
    return lambda order: LiveDisplay(console, order) if live else PlainDisplay(console)


class TestDisplay:
    """`imagekit test`'s lines: each check's mark and evidence, and what is not tested."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def result(self, result: CheckResult) -> None:
        mark = "[green]PASS[/]" if result.ok else "[red]FAIL[/]"
        self.console.print(f"{mark} {result.image}: {escape(result.name)} ({result.seconds} s)")
        self.console.print(f"     {escape(result.evidence)}", style="dim" if result.ok else None)

    def note(self, kind: str, who: str, text: str) -> None:
        if kind == "head":
            self.console.print(f"{who}:", markup=False)
        elif kind == "skip":
            self.console.print(f"[yellow]SKIP[/] {escape(who)}: {escape(text)}")
        elif kind == "before":
            self.console.print(f"[green]PASSED BEFORE[/] {escape(who)}: {escape(text)}")
        else:
            self.console.print(f"[red]FAIL[/] {escape(who)}: {escape(text)}")
