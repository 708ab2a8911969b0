"""The lock file's format alone: what `imagekit lock` writes, `load_catalog` reads back."""

from __future__ import annotations

from pathlib import Path

from imagekit import lockfile

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
