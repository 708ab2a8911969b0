"""The lock file's format alone: what `imagekit lock` writes, `load_catalog` reads back."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagekit import lockfile
from imagekit.errors import ImagekitError

BODY = ("six==1.16.0 \\\n    --hash=sha256:" + "1" * 64 + "\n"
        "Typing_Extensions==4.12.2 ; python_version < '3.12' \\\n"
        "    --hash=sha256:" + "2" * 64 + " \\\n    --hash=sha256:" + "3" * 64 + "\n")


def test_a_written_lock_reads_back_with_its_inputs_and_normalised_pins(tmp_path: Path) -> None:
    inputs = lockfile.digest({"requirements": ["six"], "python": "3.11.2"})
    header = lockfile.header("scipy", "3.11.2", "bookworm",
                             ["x86_64-manylinux_2_36", "aarch64-manylinux_2_36"], inputs)
    assert header.splitlines()[1:3] == [
        "# CPython 3.11.2 on x86_64-manylinux_2_36 and",
        "# aarch64-manylinux_2_36 (Debian bookworm), with hashes. Do not edit: change"]
    path = lockfile.beside(tmp_path / "scipy.yaml")
    assert path == tmp_path / "scipy.lock"
    written = lockfile.write(path, header + BODY)
    assert lockfile.parse(path) == written
    assert written.inputs == inputs and written.text == header + BODY
    assert written.pins == (("six", "1.16.0"), ("typing-extensions", "4.12.2"))


def test_no_lock_beside_a_stack_is_none(tmp_path: Path) -> None:
    assert lockfile.parse(tmp_path / "scipy.lock") is None


def test_the_pins_without_the_header_are_what_uv_reads_back() -> None:
    text = "# inputs: sha256:" + "a" * 64 + "\n" + BODY
    assert lockfile.pins_only(text) == BODY
    assert lockfile.pin_set(text) == {("six", "1.16.0"), ("typing-extensions", "4.12.2")}


def test_the_inputs_digest_does_not_depend_on_key_order() -> None:
    assert lockfile.digest({"a": 1, "b": [2]}) == lockfile.digest({"b": [2], "a": 1})
    assert lockfile.digest({"a": 1}) != lockfile.digest({"a": 2})
    assert len(lockfile.text_digest("x")) == 64


def _entry(name: str, version: str, digit: str) -> str:
    return f"{name}=={version} \\\n    --hash=sha256:" + digit * 64 + "\n"


def test_a_relock_that_keeps_every_settled_pin_writes_what_it_adds_below_them(
        tmp_path: Path) -> None:
    header = "# inputs: sha256:" + "a" * 64 + "\n"
    settled = _entry("numpy", "2.4.6", "4") + _entry("six", "1.16.0", "1")
    # Adding tabulate keeps numpy and six as they were: it is the added part.
    resolved = _entry("numpy", "2.4.6", "4") + _entry("six", "1.16.0", "1") + \
        _entry("tabulate", "0.9.0", "5")
    first, added = lockfile.split(resolved, header + settled)
    assert (first, added) == (settled, _entry("tabulate", "0.9.0", "5"))
    text = lockfile.compose(header, first, added)
    lock = lockfile.write(tmp_path / "scipy.lock", text)
    assert lock.added == (("tabulate", "0.9.0"),) and len(lock.pins) == 3
    assert lockfile.settled_part(text) == settled and lockfile.added_part(text) == added
    # One more: both added entries stay below, in uv's order.
    more = resolved + _entry("toolz", "1.0.0", "6")
    assert lockfile.split(more, text) == (settled, added + _entry("toolz", "1.0.0", "6"))
    # Removing the added one again gives back the settled lock, byte for byte.
    assert lockfile.compose(header, *lockfile.split(settled, text)) == header + settled
    # A settled pin that moves (or a first lock) settles everything.
    moved = _entry("numpy", "2.4.7", "7") + _entry("six", "1.16.0", "1") + \
        _entry("tabulate", "0.9.0", "5")
    assert lockfile.split(moved, text) == (moved, "")
    assert lockfile.split(resolved, None) == (resolved, "")


def test_a_second_added_line_is_refused(tmp_path: Path) -> None:
    header = "# inputs: sha256:" + "a" * 64 + "\n"
    text = lockfile.compose(header, BODY, _entry("toolz", "1.0.0", "6"))
    with pytest.raises(ImagekitError, match="second 'added since the lock was settled'"):
        lockfile.parse_text(tmp_path / "scipy.lock", text + lockfile.ADDED + "\n")
