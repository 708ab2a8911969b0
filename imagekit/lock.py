"""Pip locks: `stacks/<name>.lock`, every package a stack's venv holds, pinned with hashes.

uv's resolver (`uv pip compile --generate-hashes`) resolves the stack's whole pip list (its
ancestors' and its own) for the Python and platform of the image it is installed into,
constrained by the parent stack's lock so that a child never moves what its parent installed.
The lock's header records a digest of those inputs: `imagekit lock --check` compares it with
the catalog as it stands (no network), and a build refuses a stale lock rather than install
something the stack files no longer ask for. Builds install with `--require-hashes` from the
lock, which `imagekit render` copies into each recipe (`pip/requirements.lock`).

Credentials in the site's index URLs reach uv through its environment, never its argv, and
are removed from anything uv prints.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import canonicalize_name

from imagekit.credentials import public, redact, secret_words
from imagekit.errors import BuildFailed, ImagekitError, Problem
from imagekit.files import write_atomically
from imagekit.model import Catalog, Image, PipLock, Stack
from imagekit.schema import Platform

SUFFIX = ".lock"
# What every venv imagekit builds holds besides the stacks' packages: uv installs the rest.
ALWAYS = ("uv",)


@dataclass(frozen=True)
class Target:
    """The interpreter and platform an image's venv installs into."""

    suite: str
    python: str  # full version, as the image's python3 reports it
    platform: str  # uv's --python-platform
    machine: str

    def markers(self) -> dict[str, str]:
        """PEP 508 marker values, for reading a wheel's own Requires-Dist."""
        return {"python_version": ".".join(self.python.split(".")[:2]),
                "python_full_version": self.python, "sys_platform": "linux",
                "platform_system": "Linux", "os_name": "posix",
                "platform_machine": self.machine, "implementation_name": "cpython",
                "platform_python_implementation": "CPython"}


# Debian's python3 per suite (the venv is made from it) and the glibc its wheels may need,
# per architecture.
TARGETS: dict[tuple[str, Platform], Target] = {
    ("bookworm", "linux/amd64"): Target("bookworm", "3.11.2", "x86_64-manylinux_2_36", "x86_64"),
    ("bookworm", "linux/arm64"): Target("bookworm", "3.11.2", "aarch64-manylinux_2_36",
                                        "aarch64"),
}


def target(catalog: Catalog, platform: Platform | None = None) -> Target:
    suite = catalog.base.bootstrap.suite if catalog.base.bootstrap else "bookworm"
    found = TARGETS.get((suite, platform or catalog.platforms[0]))
    if found is None:
        raise ImagekitError(Problem(
            catalog.file, "base.bootstrap.suite",
            f"imagekit knows the Python of {', '.join(sorted({s for s, _ in TARGETS}))} "
            f"only, not {suite!r}"))
    return found


def platforms_of(catalog: Catalog, stack: Stack) -> list[Platform]:
    """The platforms the stack's images are built for, in the catalog's order. Its one lock
    serves them all: it is resolved for each, and must pin the same packages (the hashes
    of every file of a pinned version are in it, so each architecture finds its wheels)."""
    used = {p for image in catalog.images.values() if image.stack.name == stack.name
            for p in image.platforms}
    return [p for p in catalog.platforms if p in used] or [catalog.platforms[0]]


def path_for(stack: Stack) -> Path:
    return stack.file.with_suffix(SUFFIX)


# --- reading a lock ---------------------------------------------------------------------------

_PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[A-Za-z0-9._,-]+\])?"
                  r"==(?P<version>[A-Za-z0-9.+!_-]+)(?: ;[^\\]*)?(?P<more> \\)?$")
_HASH = re.compile(r"^    --hash=sha256:[0-9a-f]{64}(?P<more> \\)?$")
_INPUTS = re.compile(r"^# inputs: sha256:(?P<digest>[0-9a-f]{64})$")


def parse(file: Path) -> PipLock | None:
    """The lock beside a stack file, or None. Anything but what `imagekit lock` writes is
    refused (the file and line named): builds hand it to the installer as it is."""
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise ImagekitError(Problem(file, "", f"cannot read the lock: {exc}")) from None
    digest = None
    pins: list[tuple[str, str]] = []
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
    return PipLock(file=file, text=text, inputs=digest, pins=tuple(pins))


# --- what a lock depends on -------------------------------------------------------------------

def inputs(catalog: Catalog, stack: Stack) -> str:
    """The digest of everything that decides a stack's lock: its pip list, the parent's
    lock, the target, and where packages come from (URLs without credentials)."""
    parent = locked_ancestor(catalog, stack)
    parent_lock = parent.lock.text if parent is not None and parent.lock else None
    first, *others = platforms_of(catalog, stack)
    t = target(catalog, first)
    site = catalog.site
    document: dict[str, object] = {
        "requirements": [*stack.pip_all, *ALWAYS],
        "excluded": sorted(canonicalize_name(n) for n in stack.pip_exclude_all),
        "parent_lock": hashlib.sha256(parent_lock.encode()).hexdigest() if parent_lock else None,
        "python": t.python,
        "platform": t.platform,
        "index_url": public(site.pip_index_url),
        "extra_index_url": public(site.pip_extra_index_url),
        "find_links": site.find_links is not None,
        "no_index": site.pip_no_index,
    }
    if others:  # a one-platform catalog's locks keep the inputs they always had
        document["also_for"] = [target(catalog, p).platform for p in others]
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()


def lockable(catalog: Catalog) -> list[Stack]:
    """The catalog's stacks that install pip packages of their own, parents first."""
    order = dict.fromkeys(img.stack.name for img in catalog.images.values())
    return [catalog.stacks[name] for name in order if catalog.stacks[name].layer.pip]


def locked_ancestor(catalog: Catalog, stack: Stack) -> Stack | None:
    """The nearest ancestor that installs pip packages: what this stack's venv starts from."""
    current = stack.parent
    while current is not None:
        parent = catalog.stacks[current]
        if parent.layer.pip:
            return parent
        current = parent.parent
    return None


@dataclass(frozen=True)
class Status:
    stack: Stack
    state: str  # "current", "stale", "missing"

    def problem(self) -> Problem:
        lock = path_for(self.stack)
        return Problem(lock, "", f"{self.state}: run `imagekit lock {self.stack.name}`"
                       if self.state == "missing" else
                       f"stale (stacks/{self.stack.name}.yaml, its parent's lock or the "
                       f"site's package sources changed): run `imagekit lock "
                       f"{self.stack.name}`")


def status(catalog: Catalog, stack: Stack) -> Status:
    if stack.lock is None:
        return Status(stack, "missing")
    return Status(stack, "current" if stack.lock.inputs == inputs(catalog, stack) else "stale")


def check(catalog: Catalog) -> list[Status]:
    return [status(catalog, stack) for stack in lockable(catalog)]


def for_image(catalog: Catalog, image: Image) -> PipLock | None:
    """The lock a build of this image installs from: its stack's, for a stack image (a
    profile image adds its profiles' packages on top, unlocked). Refuses a stale one."""
    if image.profiles or not image.stack.layer.pip or image.stack.lock is None:
        return None
    state = status(catalog, image.stack)
    if state.state != "current":
        raise ImagekitError(state.problem())
    return image.stack.lock


def uv_pin(lock: PipLock) -> str:
    """The lock's entry for uv (with its hashes), for pip to install uv itself from."""
    lines = lock.text.split("\n")
    for i, line in enumerate(lines):
        if line.startswith("uv=="):
            entry = [line]
            while entry[-1].endswith("\\"):
                i += 1
                entry.append(lines[i])
            return "\n".join(entry) + "\n"
    raise ImagekitError(Problem(lock.file, "", "has no entry for uv", hint="re-run imagekit lock"))


# --- resolving ----------------------------------------------------------------------------------

def uv_binary() -> str:
    try:
        from uv import find_uv_bin
        return str(find_uv_bin())
    except (ImportError, FileNotFoundError):
        raise ImagekitError("imagekit lock needs uv: pip install uv") from None


def resolve(catalog: Catalog, stack: Stack, parent_lock: Path | None,
            previous: str | None = None) -> str:
    """The lock text for one stack, from uv's resolver.

    `previous` (the stack's current lock) is handed to uv as its output file, whose pins it
    keeps where the inputs still allow them: relocking after one package was added moves
    nothing else, so no image whose packages did not change is rebuilt.

    The lock is resolved for the first platform the stack's images are built for, then for
    each other one with those pins preferred: a package that would be pinned differently
    (or only on one architecture) is refused, naming it.
    """
    first, *others = platforms_of(catalog, stack)
    text = _compile(catalog, stack, parent_lock, previous, target(catalog, first))
    pins = _pin_set(text)
    for platform in others:
        other = _pin_set(_compile(catalog, stack, parent_lock, _pins_only(text),
                                  target(catalog, platform)))
        if other != pins:
            differ = sorted({f"{n}=={v}" for n, v in pins ^ other})
            raise BuildFailed(Problem(
                stack.file, "pip", f"resolves differently for {platform} than for {first} "
                f"({', '.join(differ[:8])}): pin these in the stack, or narrow its images' "
                "platforms in the catalog"))
    return text


def _pin_set(text: str) -> set[tuple[str, str]]:
    return {(canonicalize_name(m.group("name")), m.group("version"))
            for line in text.splitlines() if (m := _PIN.match(line))}


def _compile(catalog: Catalog, stack: Stack, parent_lock: Path | None, previous: str | None,
             t: Target) -> str:
    site = catalog.site
    argv = [uv_binary(), "pip", "compile", "--quiet", "--generate-hashes", "--no-header",
            "--no-annotate", "--no-config", "--python-version", t.python,
            "--python-platform", t.platform]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UV_", "PIP_"))}
    env["UV_CACHE_DIR"] = env.get("IMAGEKIT_UV_CACHE", str(Path.home() / ".cache/imagekit-uv"))
    # Credentials travel in the environment, which `ps` does not show to other users.
    if site.pip_index_url:
        env["UV_INDEX_URL"] = site.pip_index_url
    if site.pip_extra_index_url:
        env["UV_EXTRA_INDEX_URL"] = site.pip_extra_index_url
    if site.proxy is not None:  # the site's proxies, in place of the caller's
        env = {k: v for k, v in env.items() if k.lower() not in ("http_proxy", "https_proxy")}
        env.update({k: v for k, v in (("HTTP_PROXY", site.proxy.http),
                                      ("HTTPS_PROXY", site.proxy.https),
                                      ("NO_PROXY", site.proxy.no_proxy)) if v})
    if site.ca_bundle:
        env["SSL_CERT_FILE"] = site.ca_bundle
    if site.find_links:
        argv += ["--find-links", site.find_links]
    if site.pip_no_index:
        argv.append("--no-index")
    if parent_lock is not None:
        argv += ["--constraint", str(parent_lock)]
    with tempfile.TemporaryDirectory(prefix="imagekit-lock-") as tmp:
        requirements = Path(tmp) / "requirements.in"
        requirements.write_text("".join(f"{r}\n" for r in (*stack.pip_all, *ALWAYS)))
        if stack.pip_exclude_all:
            # uv's documented way to drop a dependency: an override whose marker never holds.
            overrides = Path(tmp) / "overrides.txt"
            overrides.write_text("".join(f"{n} ; sys_platform == 'never'\n"
                                         for n in stack.pip_exclude_all))
            argv += ["--override", str(overrides)]
        output = Path(tmp) / "requirements.lock"
        output.write_text(previous or "")
        argv += ["--output-file", str(output), str(requirements)]
        done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False,
                              cwd=tmp)
        text = output.read_text()
    if done.returncode != 0:
        why = redact(done.stderr.strip(), secret_words(site)).splitlines() or ["no output"]
        detail = "; ".join(line.strip() for line in why if line.strip())[:800]
        raise BuildFailed(Problem(stack.file, "pip", f"uv could not resolve it: {detail}"))
    return text


def header(catalog: Catalog, stack: Stack) -> str:
    first, *others = platforms_of(catalog, stack)
    t = target(catalog, first)
    on = t.platform + "".join(f" and\n# {target(catalog, p).platform}" for p in others)
    return (f"# Generated by `imagekit lock {stack.name}`: every pip package of stack "
            f"{stack.name}, for\n# CPython {t.python} on {on} (Debian {t.suite}), "
            f"with hashes. Do not edit: change\n# stacks/{stack.name}.yaml and re-run "
            f"`imagekit lock {stack.name}`.\n# inputs: sha256:{inputs(catalog, stack)}\n")


def write(catalog: Catalog, names: list[str], *, upgrade: bool = False
          ) -> Iterator[tuple[Stack, Path]]:
    """Lock the named stacks, parents first. A parent's lock must be current or locked in
    the same run: a child is resolved against it. Existing pins are kept where the stack
    still allows them, unless `upgrade`."""
    from imagekit.resolve import load_catalog

    wanted = set(names)
    for stack in lockable(catalog):
        if stack.name not in wanted:
            continue
        catalog = load_catalog(catalog.file)  # sees the parent lock this run just wrote
        stack = catalog.stacks[stack.name]
        parent = locked_ancestor(catalog, stack)
        parent_lock = None
        if parent is not None:
            state = status(catalog, parent)
            if state.state != "current":
                raise ImagekitError(Problem(
                    path_for(parent), "", f"{state.state}: lock {parent.name} first "
                    f"(imagekit lock {parent.name} {stack.name})"))
            parent_lock = path_for(parent)
        path = path_for(stack)
        previous = None if upgrade or not path.is_file() else _pins_only(path.read_text())
        text = header(catalog, stack) + resolve(catalog, stack, parent_lock, previous)
        write_atomically(path, text)
        yield stack, path



def _pins_only(text: str) -> str:
    """A lock without its header: what uv reads back as the pins to prefer."""
    return "".join(line for line in text.splitlines(keepends=True) if not line.startswith("#"))
