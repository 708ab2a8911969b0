"""Files written so that readers see the old content or the new, never a part of it.

A full disk, a Ctrl-C or a crash between the write and the rename leaves the previous file
and no stray partial: the temporary file lives beside the target (same filesystem, so the
rename is atomic) and is removed on any failure.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from imagekit.errors import ImagekitError, Problem


def umask() -> int:
    """The process's umask, read without changing it (os.umask would, for a moment, for every
    thread)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def readable_mode() -> int:
    """The mode a plain `open()` would give: mkstemp's 0600 would hide the file from the
    users it is for (a SIF, a lock, an export)."""
    return 0o666 & ~umask()


def temporary_beside(path: Path, suffix: str = ".partial") -> Path:
    """A new empty file next to `path`, with the mode `path` should end up with."""
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    os.chmod(name, readable_mode())
    return Path(name)


def write_atomically(path: Path, content: str | bytes) -> None:
    partial = temporary_beside(path)
    try:
        if isinstance(content, str):
            partial.write_text(content, encoding="utf-8")
        else:
            partial.write_bytes(content)
        partial.replace(path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def writable(path: Path, option: str = "--output") -> Path:
    """An output path whose folder exists: bad input, said before any work is done."""
    folder = path.parent
    if not folder.is_dir():
        raise ImagekitError(Problem(None, option, f"{folder} is not an existing directory"))
    if path.is_dir():
        raise ImagekitError(Problem(None, option, f"{path} is a directory, not a file"))
    return path
