"""What a step says back to whoever ran it, for the CLI to print alike for every command:
the lines, tables and trees a person reads, the JSON a program reads instead (`--json`), a
file's text printed as it is, and the exit status.

A leaf: it imports nothing of imagekit, so that every step may return one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class Markup(str):
    """A line in rich markup (`[green]PASS[/]`); every other line is printed as written."""


@dataclass(frozen=True)
class Rows:
    """A table: its columns and its rows; a cell is printed as written unless it is Markup
    (catalog data such as `dask[distributed]` is never read as markup)."""

    columns: Sequence[str]
    rows: Sequence[Sequence[str]]
    title: str | None = None
    header: bool = True  # False: a listing, without header or box, its first column bold
    no_wrap: bool = False


@dataclass(frozen=True)
class Node:
    """A tree: its label in rich markup, and its children."""

    label: str
    children: Sequence[Node] = ()


@dataclass(frozen=True)
class Said:
    out: Sequence[str | Rows | Node] = ()  # to stdout, in order
    err: Sequence[str] = ()  # to stderr, before `out`: stale files, warnings
    data: object = None  # what `--json` prints instead of `out`
    text: str = ""  # printed as it is after `out`: a script, a configuration, JSON
    code: int = 0  # the exit status: 1 when the step failed
