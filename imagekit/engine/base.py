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
from imagekit.errors import BuildFailed, ImagekitError
from imagekit.model import Catalog
from imagekit.run import run
from imagekit.schema import Bootstrap

Say = Callable[[str], None]


def ensure_base(catalog: Catalog, engine: Engine, say: Say, refresh: bool = False) -> str:
    """Make the base image exist; return how ("present", "pulled" or "bootstrapped").

    `refresh` pulls or bootstraps it again even when present: the tag moves to the new image
    only once it exists, and every image built on the old one then rebuilds (its parent's
    image ID is part of the cache key).
    """
    ref = catalog.base.image
    present = engine.image(ref)
    if present is not None and not refresh:
        stale = staleness(catalog, present)
        if stale:
            raise ImagekitError(stale)
        say(f"base image {ref} is present")
        return "present"
    if catalog.base.pull:
        say(f"pulling {ref}")
        if engine.pull(ref):
            return "pulled"
        say(f"could not pull {ref}")
    if catalog.base.bootstrap is None:
        raise ImagekitError(f"{catalog.file}: base: {ref} is not in the engine and cannot be "
                            "pulled; add base.bootstrap to build it with debootstrap")
    bootstrap(catalog, engine, say)
    return "bootstrapped"


def staleness(catalog: Catalog, info: ImageInfo, now: dt.datetime | None = None) -> str | None:
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
    return (f"{catalog.file}: base.max_age_days: the base image {catalog.base.image} is {age} "
            f"days old (at most {limit}); run `imagekit base --refresh` to bring in Debian's "
            "updates, then build again")


def bootstrap(catalog: Catalog, engine: Engine, say: Say) -> None:
    spec = catalog.base.bootstrap
    assert spec is not None
    ref = catalog.base.image
    with tempfile.TemporaryDirectory(prefix="imagekit-rootfs-") as tmp:
        if engine.rootless:
            tarball = _unprivileged(spec, Path(tmp), say)
            say(f"importing it as {ref}")
            with tarball.open("rb") as stream:
                engine.import_tar(stream, ref)
        else:
            _as_root(spec, Path(tmp) / "rootfs", engine, ref, say)
    if engine.image(ref) is None:
        raise BuildFailed(f"importing the bootstrapped root as {ref} produced no image")


def _as_root(spec: Bootstrap, root: Path, engine: Engine, ref: str, say: Say) -> None:
    if shutil.which("debootstrap") is None:
        raise ImagekitError("debootstrap is not installed (apt-get install debootstrap)")
    say(f"debootstrap --variant={spec.variant} {spec.suite} from {spec.mirror}")
    run(["debootstrap", f"--variant={spec.variant}", spec.suite, str(root), spec.mirror],
        timeout=1800)
    # The downloaded .debs stay behind in the root: they are not part of the system.
    for deb in (root / "var/cache/apt/archives").glob("*.deb"):
        deb.unlink()
    say(f"importing it as {ref}")
    tar = subprocess.Popen(["tar", "--numeric-owner", "-C", str(root), "-c", "."],
                           stdout=subprocess.PIPE)
    assert tar.stdout is not None
    try:
        engine.import_tar(tar.stdout, ref)
    finally:
        tar.stdout.close()
        if tar.wait() != 0:
            raise BuildFailed(f"tar of {root} failed")


def _unprivileged(spec: Bootstrap, folder: Path, say: Say) -> Path:
    """A user without root (rootless Podman): debootstrap needs root, so mmdebstrap builds
    the same system in a user namespace from the user's /etc/subuid range and writes it as
    a tarball whose files belong to root (it also removes the downloaded .debs)."""
    if shutil.which("mmdebstrap") is None:
        raise ImagekitError("rootless Podman bootstraps the base with mmdebstrap, which is not "
                            "installed (apt-get install mmdebstrap uidmap)")
    out = folder / "rootfs.tar"
    say(f"mmdebstrap --mode=unshare --variant={spec.variant} {spec.suite} from {spec.mirror}")
    run(["mmdebstrap", "--mode=unshare", f"--variant={spec.variant}", "--format=tar",
         spec.suite, str(out), spec.mirror], timeout=1800)
    return out
