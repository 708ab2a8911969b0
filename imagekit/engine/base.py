"""The root stack's FROM: present, pulled, or bootstrapped with debootstrap and imported.

Air-gapped HPC sites (and this project's CI, which reaches no image registry) cannot pull a
Debian image; debootstrap from a Debian mirror gives the same thing.
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from imagekit.engine.client import Engine, ImageInfo
from imagekit.engine.emulation import native, unable
from imagekit.errors import BuildFailed, ImagekitError
from imagekit.model import Catalog, arch
from imagekit.run import run
from imagekit.said import Said
from imagekit.schema import Bootstrap, Platform

Say = Callable[[str], None]
DOWNLOAD_ATTEMPTS = 3  # debootstrap runs when a package could not be downloaded


def ensure_base(catalog: Catalog, engine: Engine, say: Say, refresh: bool = False,
                platform: Platform | None = None) -> str:
    """Make the base image of `platform` (default: the catalog's first) exist; return how
    ("present", "pulled" or "bootstrapped").

    `refresh` pulls or bootstraps it again even when present: the tag moves to the new image
    only once it exists, and every image built on the old one then rebuilds (its parent's
    image ID is part of the cache key).
    """
    platform = platform or catalog.platforms[0]
    ref = catalog.base_ref(platform)
    present = engine.image(ref)
    if present is not None and not refresh:
        stale = staleness(catalog, present, ref=ref)
        if stale:
            raise ImagekitError(stale)
        say(f"base image {ref} is present")
        return "present"
    if catalog.base.pull and ref == catalog.base.image:
        say(f"pulling {ref}")
        if engine.pull(ref, platform):
            return "pulled"
        say(f"could not pull {ref}")
    elif catalog.base.pull:
        # Pulling the catalog's base for a second platform would move its own tag: the
        # other platforms' bases are bootstrapped.
        say(f"{ref} is not pulled (a base for {platform} is bootstrapped)")
    if catalog.base.bootstrap is None:
        raise ImagekitError(f"{catalog.file}: base: {ref} is not in the engine and cannot be "
                            "pulled; add base.bootstrap to build it with debootstrap")
    why = unable(platform)
    if why is not None:
        raise ImagekitError(f"{catalog.file}: platforms: cannot bootstrap the {platform} base: "
                            f"{why}")
    bootstrap(catalog, engine, say, platform)
    return "bootstrapped"


def ensure_bases(catalog: Catalog, engine: str | None, platforms: list[str] | None, say: Say,
                 refresh: bool = False) -> Said:
    """`imagekit base`: each platform's base (default: the catalog's platforms), and how it
    came to exist."""
    from imagekit.engine.choice import connect

    chosen = catalog.choose_platforms(platforms)
    found = connect(catalog, engine)
    return Said([f"{catalog.base_ref(p)}: {ensure_base(catalog, found, say, refresh, p)}"
                 for p in chosen])


def staleness(catalog: Catalog, info: ImageInfo, now: dt.datetime | None = None,
              ref: str | None = None) -> str | None:
    """Why the base is too old for the catalog's `base.max_age_days`, or None."""
    limit = catalog.base.max_age_days
    if limit is None or not info.created:
        return None
    # Engines report nanoseconds, which datetime does not take: seconds are enough here.
    found = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.\d+)?(Z|[+-]\d\d:\d\d)",
                         info.created)
    if found is None:
        return None
    zone = "+00:00" if found[2] == "Z" else found[2]
    created = dt.datetime.fromisoformat(found[1] + zone)
    age = ((now or dt.datetime.now(dt.UTC)) - created).days
    if age <= limit:
        return None
    return (f"{catalog.file}: base.max_age_days: the base image {ref or catalog.base.image} "
            f"is {age} "
            f"days old (at most {limit}); run `imagekit base --refresh` to bring in Debian's "
            "updates, then build again")


def bootstrap(catalog: Catalog, engine: Engine, say: Say,
              platform: Platform | None = None) -> None:
    spec = catalog.base.bootstrap
    assert spec is not None
    platform = platform or catalog.platforms[0]
    ref = catalog.base_ref(platform)
    with tempfile.TemporaryDirectory(prefix="imagekit-rootfs-") as tmp:
        if engine.rootless:
            tarball = _unprivileged(spec, Path(tmp), say, platform)
            say(f"importing it as {ref}")
            with tarball.open("rb") as stream:
                engine.import_tar(stream, ref, platform, _comment(spec, platform))
        else:
            _as_root(spec, Path(tmp) / "rootfs", engine, ref, say, platform)
    if engine.image(ref) is None:
        raise BuildFailed(f"importing the bootstrapped root as {ref} produced no image")


def _comment(spec: Bootstrap, platform: Platform) -> str:
    return (f"imagekit base: debootstrap --arch={arch(platform)} --variant={spec.variant} "
            f"{spec.suite} {spec.mirror}")


def _as_root(spec: Bootstrap, root: Path, engine: Engine, ref: str, say: Say,
             platform: Platform) -> None:
    if shutil.which("debootstrap") is None:
        raise ImagekitError("debootstrap is not installed (apt-get install debootstrap)")
    emulated = "" if native(platform) else ", under emulation"
    say(f"debootstrap --arch={arch(platform)} --variant={spec.variant} {spec.suite} from "
        f"{spec.mirror}{emulated}")
    debootstrap(root, spec.suite, spec.mirror,
                [f"--arch={arch(platform)}", f"--variant={spec.variant}"], say)
    # The downloaded .debs stay behind in the root: they are not part of the system.
    for deb in (root / "var/cache/apt/archives").glob("*.deb"):
        deb.unlink()
    say(f"importing it as {ref}")
    tar = subprocess.Popen(["tar", "--numeric-owner", "-C", str(root), "-c", "."],
                           stdout=subprocess.PIPE)
    assert tar.stdout is not None
    try:
        engine.import_tar(tar.stdout, ref, platform, _comment(spec, platform))
    finally:
        tar.stdout.close()
        if tar.wait() != 0:
            raise BuildFailed(f"tar of {root} failed")


def debootstrap(root: Path, suite: str, mirror: str, options: list[str], say: Say) -> None:
    """debootstrap `suite` into `root`. debootstrap gives up on a package at its first
    failed download (a mirror's or a proxy's passing error): the run is tried again, on a
    new root, with the packages it did download kept in a cache beside the root."""
    debs = root.with_name(root.name + ".debs")
    debs.mkdir(exist_ok=True)
    try:
        for attempt in range(1, DOWNLOAD_ATTEMPTS + 1):
            shutil.rmtree(root, ignore_errors=True)
            try:
                run(["debootstrap", *options, f"--cache-dir={debs}", suite, str(root), mirror],
                    timeout=3600)
                return
            except BuildFailed as failed:
                if "Couldn't download" not in str(failed) or attempt == DOWNLOAD_ATTEMPTS:
                    raise
                missing = next((line.strip() for line in str(failed).splitlines()
                                if "Couldn't download" in line), "")
                say(f"debootstrap: {missing.removeprefix('E: ')}; trying again "
                    f"({attempt + 1} of {DOWNLOAD_ATTEMPTS})")
    finally:
        shutil.rmtree(debs, ignore_errors=True)


def _unprivileged(spec: Bootstrap, folder: Path, say: Say, platform: Platform) -> Path:
    """A user without root (rootless Podman): debootstrap needs root, so mmdebstrap builds
    the same system in a user namespace from the user's /etc/subuid range and writes it as
    a tarball whose files belong to root (it also removes the downloaded .debs)."""
    if shutil.which("mmdebstrap") is None:
        raise ImagekitError("rootless Podman bootstraps the base with mmdebstrap, which is not "
                            "installed (apt-get install mmdebstrap uidmap)")
    out = folder / "rootfs.tar"
    say(f"mmdebstrap --mode=unshare --architectures={arch(platform)} --variant={spec.variant} "
        f"{spec.suite} from {spec.mirror}")
    run(["mmdebstrap", "--mode=unshare", f"--architectures={arch(platform)}",
         f"--variant={spec.variant}", "--format=tar", spec.suite, str(out), spec.mirror],
        timeout=3600)
    return out
