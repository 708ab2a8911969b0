"""The one error type every user-facing failure raises.

Each problem names the file, the field (a dotted path), the line where YAML gives it, what is
wrong and, where we can guess, what the user meant. The CLI prints them and exits 2.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit


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


def reason(exc: BaseException) -> str:
    """What a network or system error comes down to, in the words a person reads
    ("Connection refused", "Name or service not known", "Read timed out"): never the reprs
    of the objects that wrapped it on the way up."""
    text = str(exc)
    errno = re.search(r"\[Errno -?\d+\] ([^'\"()\[\]]+)", text)
    if errno is not None:
        return errno[1].strip().rstrip(".")
    timeout = re.search(r"(Read timed out|Connect timeout|timed out)", text)
    if timeout is not None:
        return timeout[1]
    quoted = re.findall(r"\w\((['\"])([^'\"]+)\1\)", text)  # Error('what'), innermost last
    if quoted:
        return str(quoted[-1][1]).strip().rstrip(".")
    text = re.sub(r"<[^<>]* object at 0x[0-9a-f]+>:?\s*", "", text)
    last = text.strip().splitlines()[0].rsplit(": ", 1)[-1] if text.strip() else ""
    return last.strip(" '\"()")[:200] or type(exc).__name__


def one_line(exc: BaseException) -> str:
    """An engine's or a registry's error as one line: a connection's failure as where and
    why, anything else as its first line."""
    import requests

    if isinstance(exc, requests.ConnectionError):
        url = exc.request.url if exc.request is not None else None
        where = urlsplit(url).netloc if url else "the server"
        return f"connection to {where} failed: {reason(exc)}"
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
