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

import os
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from packaging.utils import canonicalize_name

from imagekit import lockfile
from imagekit.credentials import public, redact, secret_words
from imagekit.errors import BuildFailed, ImagekitError, Problem, did_you_mean
from imagekit.model import Catalog, Image, PipLock, Stack
from imagekit.said import Said
from imagekit.schema import Platform, SiteSettings

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
    return lockfile.beside(stack.file)


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
        "parent_lock": lockfile.text_digest(parent_lock) if parent_lock else None,
        "python": t.python,
        "platform": t.platform,
        "index_url": public(site.pip_index_url),
        "extra_index_url": public(site.pip_extra_index_url),
        "find_links": site.find_links is not None,
        "no_index": site.pip_no_index,
    }
    if others:  # a one-platform catalog's locks keep the inputs they always had
        document["also_for"] = [target(catalog, p).platform for p in others]
    return lockfile.digest(document)


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


def stale_locks(catalog: Catalog, names: list[str]) -> list[Problem]:
    """Every stale lock a build of the named images (and their parents) would install from,
    each once: said before anything is built."""
    problems: list[Problem] = []
    for image in catalog.closure(names):
        try:
            for_image(catalog, image)
        except ImagekitError as exc:
            problems += [p for p in exc.problems if p not in problems]
    return problems


def stacks_to_lock(catalog: Catalog, names: list[str], all_: bool = False) -> list[str]:
    """The stacks `imagekit lock` locks: every stack with pip packages of its own (`all_`),
    else the named ones, an image's name standing for its stack's. Raises naming every
    name that is neither, or a stack that has nothing to lock."""
    lockable_names = [stack.name for stack in lockable(catalog)]
    if all_:
        return lockable_names
    if not names:
        raise ImagekitError("name at least one stack or image, or pass --all")
    wanted: list[str] = []
    problems: list[Problem] = []
    for name in names:
        stack = catalog.images[name].stack.name if name in catalog.images else name
        if stack in lockable_names:
            wanted.append(stack)
        elif stack in catalog.stacks:
            problems.append(Problem(catalog.stacks[stack].file, "pip",
                                    f"stack {stack} installs no pip packages of its own"))
        else:
            problems.append(Problem(None, "NAMES", f"unknown stack or image {name!r}", None,
                                    did_you_mean(name, [*catalog.stacks, *catalog.images])))
    if problems:
        raise ImagekitError(problems)
    return wanted


def for_image(catalog: Catalog, image: Image) -> PipLock | None:
    """The lock a build of this image installs from: its stack's, for a stack image (a
    profile image adds its profiles' packages on top, unlocked). Refuses a stale one."""
    if image.profiles or not image.stack.layer.pip or image.stack.lock is None:
        return None
    state = status(catalog, image.stack)
    if state.state != "current":
        raise ImagekitError(state.problem())
    return image.stack.lock


@dataclass(frozen=True)
class SettledPart:
    """One layer of an image's settled install: the lock file it installs (recipe folder
    pip/), the wheelhouse folder of the build context it binds, and its lock entries."""
    file: str
    wheelhouse: str
    entries: str

    def pins(self) -> tuple[str, ...]:
        return tuple(f"{n}=={v}" for n, v in lockfile.entries(self.entries))


def settled_parts(image: Image, pins: PipLock) -> tuple[SettledPart, ...]:
    """The settled part of the image's (current) lock as the layers that install it, in
    order: one per pattern of the stack's pip_layers that names a settled package
    (settled-1.lock, ...), then the rest (settled.lock). Each part binds a wheelhouse of its
    own, so that a pin moved in one part leaves the layers of the others as they were.
    A pattern must name a package of the lock (one that names only added packages gets its
    layer once they are settled)."""
    stack = image.stack
    for i, pattern in enumerate(stack.pip_layers):
        if not lockfile.matching(pins.pins, pattern):
            raise ImagekitError(Problem(stack.file, f"pip_layers[{i}]",
                                        f"{pattern!r} matches no package of {pins.file.name}",
                                        hint="a pip project name, or a glob such as nvidia-*"))
    *own, rest = lockfile.settled_layers(pins.text, stack.pip_layers)
    parts = [SettledPart(f"settled-{i}.lock", f"wheelhouse-{i}", text)
             for i, text in enumerate(filter(None, own), 1)]
    if rest or not parts:
        parts.append(SettledPart("settled.lock", "wheelhouse", rest))
    return tuple(parts)


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
    pins = lockfile.pin_set(text)
    for platform in others:
        other = lockfile.pin_set(_compile(catalog, stack, parent_lock, lockfile.pins_only(text),
                                  target(catalog, platform)))
        if other != pins:
            differ = sorted({f"{n}=={v}" for n, v in pins ^ other})
            raise BuildFailed(Problem(
                stack.file, "pip", f"resolves differently for {platform} than for {first} "
                f"({', '.join(differ[:8])}): pin these in the stack, or narrow its images' "
                "platforms in the catalog"))
    return text


def _compile(catalog: Catalog, stack: Stack, parent_lock: Path | None, previous: str | None,
             t: Target) -> str:
    site = catalog.site
    argv = [uv_binary(), "pip", "compile", "--quiet", "--generate-hashes", "--no-header",
            "--no-annotate", "--no-config", "--python-version", t.python,
            "--python-platform", t.platform, *_source_args(site, parent_lock)]
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
        done = subprocess.run(argv, env=_uv_environment(site), capture_output=True, text=True,
                              check=False, cwd=tmp)
        text = output.read_text()
    if done.returncode != 0:
        why = redact(done.stderr.strip(), secret_words(site)).splitlines() or ["no output"]
        detail = "; ".join(line.strip() for line in why if line.strip())[:800]
        raise BuildFailed(Problem(stack.file, "pip", f"uv could not resolve it: {detail}"))
    return text


def _uv_environment(site: SiteSettings) -> dict[str, str]:
    """uv's environment: the caller's without its uv and pip settings, plus the site's
    index URLs, proxies and CA bundle. Credentials travel here, which `ps` does not show to
    other users, never in argv."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UV_", "PIP_"))}
    env["UV_CACHE_DIR"] = env.get("IMAGEKIT_UV_CACHE", str(Path.home() / ".cache/imagekit-uv"))
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
    return env


def _source_args(site: SiteSettings, parent_lock: Path | None) -> list[str]:
    """uv's arguments for where packages come from besides the index: the wheelhouse, and
    the parent's lock as constraints."""
    argv: list[str] = []
    if site.find_links:
        argv += ["--find-links", site.find_links]
    if site.pip_no_index:
        argv.append("--no-index")
    if parent_lock is not None:
        argv += ["--constraint", str(parent_lock)]
    return argv


def header(catalog: Catalog, stack: Stack) -> str:
    first, *others = platforms_of(catalog, stack)
    t = target(catalog, first)
    return lockfile.header(stack.name, t.python, t.suite,
                           [t.platform, *(target(catalog, p).platform for p in others)],
                           inputs(catalog, stack))


def write(catalog: Catalog, names: list[str], *, upgrade: bool = False, settle: bool = False,
          keep_current: bool = False) -> Iterator[tuple[Stack, Path]]:
    """Lock the named stacks, parents first. A parent's lock must be current or locked in
    the same run: a child is resolved against it. Existing pins are kept where the stack
    still allows them, unless `upgrade`.

    Pins a relock adds while every settled pin stays as it was are written as the lock's
    added part, which images install in a layer of their own above the settled part: adding
    a package then installs that package (and whatever else was added since), not the whole
    lock. A relock that moves or drops a settled pin, `upgrade` and `settle` settle them all.
    With `keep_current`, a current lock (its inputs unchanged) is left as it is.
    """
    wanted = set(names)
    for stack in lockable(catalog):
        if stack.name not in wanted:
            continue
        stack = catalog.stacks[stack.name]  # with the parent lock this run just wrote
        if keep_current and status(catalog, stack).state == "current":
            continue  # uv would keep every pin: the lock it would write is this one
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
        previous = None if upgrade or not path.is_file() else path.read_text()
        resolved = resolve(catalog, stack, parent_lock,
                           None if previous is None else lockfile.pins_only(previous))
        settled, added = lockfile.split(resolved, None if settle else previous)
        text = lockfile.compose(header(catalog, stack), settled, added)
        catalog = with_lock(catalog, stack, lockfile.write(path, text))
        yield catalog.stacks[stack.name], path  # the stack with the lock just written


def with_lock(catalog: Catalog, stack: Stack, lock: PipLock) -> Catalog:
    """The catalog as `load_catalog` reads it once `lock` is the stack's lock on disk."""
    locked = replace(stack, lock=lock)
    images = {name: replace(image, stack=locked) if image.stack.name == stack.name else image
              for name, image in catalog.images.items()}
    return replace(catalog, stacks={**catalog.stacks, stack.name: locked}, images=images)


def lock_or_check(catalog: Catalog, names: list[str], all_: bool, *, check_only: bool,
                  upgrade: bool, say: Callable[[str], None], settle: bool = False) -> Said:
    """`imagekit lock`: lock the named stacks (or all), saying each lock as it is written;
    with `check_only`, offline, every missing or stale lock is an error (exit 1)."""
    if check_only:
        bad = [s.problem() for s in check(catalog) if s.state != "current"]
        if bad:
            raise BuildFailed(bad)
        return Said([f"ok: {len(lockable(catalog))} locks match their stacks"])
    for line in lock_named(catalog, names, all_, upgrade=upgrade, settle=settle):
        say(line)
    return Said()


def lock_named(catalog: Catalog, names: list[str], all_: bool, *, upgrade: bool = False,
               settle: bool = False) -> Iterator[str]:
    """`imagekit lock NAMES` (or `--all`): every name checked before anything is resolved;
    says each lock as it is written."""
    wanted = stacks_to_lock(catalog, names, all_)
    written: set[str] = set()
    # --all leaves a current lock alone (not with --upgrade or --settle); a stack named is
    # resolved again, keeping its pins: that also mends a lock edited by hand.
    keep_current = all_ and not (upgrade or settle)
    for locked, path in write(catalog, wanted, upgrade=upgrade, settle=settle,
                              keep_current=keep_current):
        written.add(locked.name)
        assert locked.lock is not None  # write() yields each stack with its new lock
        added = (f" ({len(locked.lock.added)} added since it was settled)"
                 if locked.lock.added else "")
        yield (f"locked {locked.name}: {len(locked.lock.pins)} packages in "
               f"{path.relative_to(catalog.root)}{added}")
    for name in wanted:
        if name not in written:
            yield (f"current {name}: {path_for(catalog.stacks[name]).relative_to(catalog.root)}"
                   f" matches its stack (`imagekit lock {name}` resolves it again)")
