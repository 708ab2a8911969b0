"""The one error type every user-facing failure raises.

Each problem names the file, the field (a dotted path), the line where YAML gives it, what is
wrong and, where we can guess, what the user meant. The CLI prints them and exits 2.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Problem:
    file: Path | None
    field: str
    message: str
    line: int | None = None
    hint: str | None = None

    def __str__(self) -> str:
        where = str(self.file) if self.file is not None else ""
        if self.line is not None:
            where += f":{self.line}"
        text = "".join(f"{part}: " for part in (where, self.field) if part) + self.message
        if self.hint:
            text += f" ({self.hint})"
        return text


class ImagekitError(Exception):
    """A failure caused by the user's input or environment, not by a bug in imagekit."""

    exit_code = 2

    def __init__(self, problems: Iterable[Problem] | Problem | str) -> None:
        if isinstance(problems, str):
            problems = [Problem(None, "", problems)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems: list[Problem] = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class BuildFailed(ImagekitError):
    """The engine ran and a step failed: not bad input, so exit status 1."""

    exit_code = 1


def did_you_mean(name: str, choices: Iterable[str]) -> str | None:
    close = difflib.get_close_matches(name, sorted(choices), n=1, cutoff=0.6)
    return f"did you mean {close[0]}?" if close else None
