"""The root stack's FROM: present, pulled, or bootstrapped with debootstrap and imported.

Air-gapped HPC sites (and this project's CI, which reaches no image registry) cannot pull a
Debian image; debootstrap from a Debian mirror gives the same thing.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from imagekit.engine.client import Engine
from imagekit.errors import BuildFailed, ImagekitError
from imagekit.model import Catalog
from imagekit.run import run

Say = Callable[[str], None]


def ensure_base(catalog: Catalog, engine: Engine, say: Say) -> str:
    """Make the base image exist; return how ("present", "pulled" or "bootstrapped")."""
    ref = catalog.base.image
    if engine.image(ref) is not None:
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


def bootstrap(catalog: Catalog, engine: Engine, say: Say) -> None:
    spec = catalog.base.bootstrap
    assert spec is not None
    if shutil.which("debootstrap") is None:
        raise ImagekitError("debootstrap is not installed (apt-get install debootstrap)")
    ref = catalog.base.image
    with tempfile.TemporaryDirectory(prefix="imagekit-rootfs-") as tmp:
        root = Path(tmp) / "rootfs"
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
        repository, _, tag = ref.rpartition(":")
        try:
            engine.client.api.import_image_from_stream(tar.stdout, repository=repository, tag=tag)
        finally:
            tar.stdout.close()
            if tar.wait() != 0:
                raise BuildFailed(f"tar of {root} failed")
    if engine.image(ref) is None:
        raise BuildFailed(f"importing the bootstrapped root as {ref} produced no image")
