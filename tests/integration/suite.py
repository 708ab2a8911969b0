"""The suite's own site, beside whatever `make demo` left running.

The demo keeps a registry on the catalog's address (127.0.0.1:5055), the images it built
(whose local names carry that address and the catalog's namespace) and the checkout's
`dist/`. The suite touches none of them: every catalog a test uses is a copy of the
project's own that names the suite's registry (a loopback port of its own, chosen when the
suite starts, or IMAGEKIT_TEST_REGISTRY) and a namespace of its own, and lives in a
temporary folder, so that builds, publications and `dist/` are the suite's alone.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "suite"


# Below the kernel's ephemeral range (32768 and up): a port picked from it could be handed to
# a container's published port while the suite's registry is stopped between two modules.
_PORTS = range(5056, 6000)
_HANDED: set[int] = set()


def _free_port() -> int:
    for port in _PORTS:
        if port in _HANDED:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        _HANDED.add(port)
        return port
    raise RuntimeError(f"no free port in {_PORTS}")


def free_address() -> str:
    """Another loopback address of the suite's: for a registry that runs beside the
    suite's own (tests/integration/background.py); never one already handed out."""
    return f"127.0.0.1:{_free_port()}"


# Chosen once per test process; a loopback address, which Docker and Podman's own defaults
# already speak plain HTTP to (the catalog says insecure_registry as well).
ADDRESS = os.environ.get("IMAGEKIT_TEST_REGISTRY") or free_address()
_HANDED.add(int(ADDRESS.rpartition(":")[2]))  # a port given by the environment too


def catalog_text(namespace: str = NAMESPACE, source: Path = ROOT / "catalog.yaml",
                 registry: str = ADDRESS) -> str:
    """The project's catalog with the suite's registry and the given namespace."""
    text = source.read_text()
    text, registries = re.subn(r"(?m)^registry: .*$", f"registry: {registry}", text)
    text, namespaces = re.subn(r"(?m)^namespace: .*$", f"namespace: {namespace}", text)
    assert (registries, namespaces) == (1, 1), "catalog.yaml: one registry and one namespace"
    return text


# A catalog whose SIFs no test reads below their partitions (the squashfs's size, bytes or
# level) asks for gzip's fastest level: the method, partitions, owners, signatures, SBOMs and
# digests a test reads are the same at any level, and mksquashfs spends about half the CPU
# (1.2 GB of Python packages here: 10.7 CPU-s at level 1, 19.6 at the default 5).
QUICK_SIFS = "sif: {level: 1}\n"


def copy_project(folder: Path, namespace: str = NAMESPACE,
                 parts: tuple[str, ...] = ("stacks", "profiles"),
                 registry: str = ADDRESS, quick_sifs: bool = False) -> Path:
    """stacks/ and profiles/ copied into `folder` beside a catalog of the suite's; returns
    the catalog's path (its dist/ is `folder / "dist"`). `quick_sifs`: see QUICK_SIFS."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in parts:
        shutil.copytree(ROOT / name, folder / name)
    catalog = folder / "catalog.yaml"
    catalog.write_text(catalog_text(namespace, registry=registry)
                       + (QUICK_SIFS if quick_sifs else ""))
    return catalog


def ref(image: str, namespace: str = NAMESPACE, tag: str = "latest",
        registry: str = ADDRESS) -> str:
    """An image's local name (and registry reference) in the suite's site."""
    return f"{registry}/{namespace}/{image}:{tag}"


def repository(image: str, namespace: str = NAMESPACE, registry: str = ADDRESS) -> str:
    return f"{registry}/{namespace}/{image}"


# The CLI the tests run is this checkout's, whatever folder it runs in and whichever
# checkout pip's editable install names.
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)

# What the compose deployment of test_smoke.py runs (tests/integration/docker-compose.yml).
os.environ["IMAGEKIT_SUITE_SCIPY"] = ref("scipy")

# The project every test uses unless it makes its own: made when the suite starts, removed
# when the process ends.
PROJECT = Path(tempfile.mkdtemp(prefix="imagekit-suite-"))
PROJECT.chmod(0o755)  # the SIF tests' unprivileged Apptainer user reads dist/ through it
CATALOG = copy_project(PROJECT, parts=("stacks", "profiles", "schemas"))
DIST = PROJECT / "dist"
atexit.register(shutil.rmtree, PROJECT, ignore_errors=True)
