"""The on-disk format of a pip lock, `stacks/<name>.lock`: read, digest, write.

A lock is uv's `pip compile --generate-hashes` output under a header of comments, one of
which records the digest of what the lock was resolved from (`# inputs: sha256:...`). Its
entries come in two parts: the settled ones, then, under the line `ADDED`, those a relock
added while keeping every settled pin. Images install the two parts as layers of their own,
so adding a package to a stack installs the added part again, not the whole lock. This
module knows that format and nothing of catalogs: `imagekit.resolve` reads each stack's lock
with it, `imagekit.lock` (which decides what a lock depends on, and runs uv) writes them.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import re
from collections.abc import Mapping
from pathlib import Path

from packaging.utils import canonicalize_name

from imagekit.errors import ImagekitError, Problem
from imagekit.files import write_atomically
from imagekit.model import PipLock

SUFFIX = ".lock"

_PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[A-Za-z0-9._,-]+\])?"
                  r"==(?P<version>[A-Za-z0-9.+!_-]+)(?: ;[^\\]*)?(?P<more> \\)?$")
_HASH = re.compile(r"^    --hash=sha256:[0-9a-f]{64}(?P<more> \\)?$")
_INPUTS = re.compile(r"^# inputs: sha256:(?P<digest>[0-9a-f]{64})$")
# The line between a lock's settled entries and those added since it was settled.
ADDED = ("# added since the lock was settled (a layer of their own; "
         "`imagekit lock --settle` folds them in):")


def beside(stack_file: Path) -> Path:
    """Where a stack's lock is: next to its YAML file."""
    return stack_file.with_suffix(SUFFIX)


def parse(file: Path) -> PipLock | None:
    """The lock beside a stack file, or None. Anything but what `imagekit lock` writes is
    refused (the file and line named): builds hand it to the installer as it is."""
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise ImagekitError(Problem(file, "", f"cannot read the lock: {exc}")) from None
    return parse_text(file, text)


def parse_text(file: Path, text: str) -> PipLock:
    """A lock's text, `file` naming it in problems."""
    digest = None
    pins: list[tuple[str, str]] = []
    added_from: int | None = None  # the index in pins of the first added entry
    continued = False
    for number, line in enumerate(text.split("\n"), 1):
        if continued:
            m = _HASH.match(line)
            if m is None:
                raise ImagekitError(Problem(file, "", "expected a '--hash=sha256:' line",
                                            line=number, hint="re-run imagekit lock"))
            continued = m.group("more") is not None
            continue
        if not line:
            continue
        if line == ADDED:
            if added_from is not None:
                raise ImagekitError(Problem(file, "", "a second 'added since the lock was "
                                            "settled' line", line=number,
                                            hint="re-run imagekit lock"))
            added_from = len(pins)
            continue
        if line.startswith("#"):
            m = _INPUTS.match(line)
            digest = m.group("digest") if m else digest
            continue
        m = _PIN.match(line)
        if m is None or m.group("more") is None:
            raise ImagekitError(Problem(file, "", "expected 'name==version \\' and its hashes",
                                        line=number, hint="re-run imagekit lock"))
        pins.append((canonicalize_name(m.group("name")), m.group("version")))
        continued = True
    if continued or digest is None:
        raise ImagekitError(Problem(file, "", "incomplete lock (no inputs line, or a "
                                    "package without hashes)", hint="re-run imagekit lock"))
    added = () if added_from is None else tuple(pins[added_from:])
    return PipLock(file=file, text=text, inputs=digest, pins=tuple(pins), added=added)


def pin_set(text: str) -> set[tuple[str, str]]:
    """The (normalised name, version) pairs of a lock's (or uv's output's) text."""
    return {(canonicalize_name(m.group("name")), m.group("version"))
            for line in text.splitlines() if (m := _PIN.match(line))}


def pins_only(text: str) -> str:
    """A lock without its header: what uv reads back as the pins to prefer."""
    return "".join(line for line in text.splitlines(keepends=True) if not line.startswith("#"))


def entries(text: str) -> dict[tuple[str, str], str]:
    """A lock's (or uv's output's) entries by (normalised name, version): each a pin line
    and its hash lines, as written, in the text's order."""
    found: dict[tuple[str, str], str] = {}
    current: tuple[str, str] | None = None
    for line in text.splitlines(keepends=True):
        if current is not None and line.startswith("    --hash="):
            found[current] += line
            continue
        current = None
        if (m := _PIN.match(line.rstrip("\n"))) is not None:
            current = (canonicalize_name(m.group("name")), m.group("version"))
            found[current] = line
    return found


def split(resolved: str, previous: str | None) -> tuple[str, str]:
    """A relock's entries as (settled, added): those of `previous` (a lock's text) stay
    settled and the rest are added, if every settled entry of `previous` is still resolved
    exactly as it was; else (a pin moved or went, or no previous lock) all are settled."""
    new = entries(resolved)
    if previous is None:
        return "".join(new.values()), ""
    settled = entries(_parts(previous)[0])
    if not settled or any(new.get(pin) != entry for pin, entry in settled.items()):
        return "".join(new.values()), ""
    return ("".join(e for pin, e in new.items() if pin in settled),
            "".join(e for pin, e in new.items() if pin not in settled))


def compose(header_text: str, settled: str, added: str) -> str:
    """A lock's text from its header and its two parts (see `split`)."""
    return header_text + settled + (f"{ADDED}\n{added}" if added else "")


def _parts(text: str) -> tuple[str, str]:
    """A lock's text before the `ADDED` line, and after it ("" without one)."""
    at = text.find(f"\n{ADDED}\n")
    if at < 0:
        return text, ""
    return text[:at + 1], text[at + len(ADDED) + 2:]


def settled_part(text: str) -> str:
    """The settled entries of a lock's text (all of them when nothing was added)."""
    return "".join(entries(_parts(text)[0]).values())


def matching(pins: tuple[tuple[str, str], ...], pattern: str) -> list[tuple[str, str]]:
    """The pins whose (normalised) name the (normalised) pattern matches."""
    return [pin for pin in pins if fnmatch.fnmatchcase(pin[0], pattern)]


def settled_layers(text: str, patterns: tuple[str, ...]) -> list[str]:
    """The settled part of a lock's text in len(patterns) + 1 parts: the entries of each
    pattern (each entry in the part of the first pattern its name matches), then the rest.
    With no patterns, the whole settled part; a part may be empty."""
    parts = ["" for _ in patterns] + [""]
    for (name, _), entry in entries(_parts(text)[0]).items():
        at = next((i for i, p in enumerate(patterns) if fnmatch.fnmatchcase(name, p)),
                  len(patterns))
        parts[at] += entry
    return parts


def added_part(text: str) -> str:
    """The entries a lock added since it was settled ("" when none)."""
    return "".join(entries(_parts(text)[1]).values())


def digest(document: Mapping[str, object]) -> str:
    """The digest a lock's inputs line records: of a JSON document, keys sorted."""
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()


def text_digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def header(stack: str, python: str, suite: str, platforms: list[str], inputs: str) -> str:
    """The comment lines a lock starts with, the inputs line last."""
    on = platforms[0] + "".join(f" and\n# {p}" for p in platforms[1:])
    return (f"# Generated by `imagekit lock {stack}`: every pip package of stack "
            f"{stack}, for\n# CPython {python} on {on} (Debian {suite}), "
            f"with hashes. Do not edit: change\n# stacks/{stack}.yaml and re-run "
            f"`imagekit lock {stack}`.\n# inputs: sha256:{inputs}\n")


def write(file: Path, text: str) -> PipLock:
    """Write a lock (atomically: a build never reads half of one) and return it as read."""
    write_atomically(file, text)
    return parse_text(file, text)
