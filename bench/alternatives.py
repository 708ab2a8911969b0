"""What a site would use instead of imagekit, for the same package set on the same base.

- hpccm: NVIDIA's recipe generator (PyPI `hpccm`): its baseimage primitive and its apt_get
  and pip building blocks, rendered to a Dockerfile by hpccm itself.
- hand: the Dockerfile a careful user writes by hand: one RUN per layer of the stack tree,
  BuildKit cache mounts for apt and pip.

Both get what imagekit's images get to build here (the site CA bundle, a venv, since
bookworm's Python refuses system-wide pip installs) and nothing else.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench.host import docker
from imagekit.model import Catalog

VENV = "/opt/venv"
CA = "/etc/ssl/site-ca.crt"


@dataclass(frozen=True)
class PackageSet:
    """One image's packages as its stacks declare them: apt, then pip layer by layer."""

    base: str
    apt: tuple[str, ...]
    pip_layers: tuple[tuple[str, ...], ...]

    @classmethod
    def of(cls, catalog: Catalog, image: str) -> PackageSet:
        layers: list[tuple[str, ...]] = []
        for ancestor in catalog.lineage(image):
            own = tuple(p for p in ancestor.stack.pip_all
                        if not any(p in done for done in layers))
            if own and ancestor.profiles == ():
                layers.append(own)
        return cls(catalog.base.image, catalog.images[image].stack.apt_all, tuple(layers))

    def plus(self, package: str) -> PackageSet:
        """The same set with one pip package added to its last layer."""
        *first, last = self.pip_layers
        return PackageSet(self.base, self.apt, (*first, (*last, package)))

    @property
    def pip(self) -> tuple[str, ...]:
        return tuple(p for layer in self.pip_layers for p in layer)


def hpccm_recipe(packages: PackageSet) -> str:
    import hpccm
    from hpccm.building_blocks import apt_get, pip
    from hpccm.primitives import baseimage, environment, shell
    from hpccm.primitives import copy as copy_

    hpccm.config.set_container_format("docker")
    stage = hpccm.Stage()
    stage += baseimage(image=packages.base, _distro="ubuntu22")
    stage += copy_(src="ca-bundle.crt", dest=CA)
    stage += environment(variables={"PATH": f"{VENV}/bin:$PATH", "PIP_CERT": CA,
                                    "SSL_CERT_FILE": CA})
    stage += apt_get(ospackages=list(packages.apt))
    stage += shell(commands=[f"python3 -m venv {VENV}"])
    stage += pip(packages=list(packages.pip), pip=f"{VENV}/bin/pip", ospackages=[],
                 upgrade=False)
    return str(stage) + "\nCMD [\"jupyter\", \"lab\"]\n"


def hand_recipe(packages: PackageSet) -> str:
    def words(items: tuple[str, ...]) -> str:
        return " ".join(f"'{p}'" for p in items)

    lines = [f"FROM {packages.base}",
             f"COPY ca-bundle.crt {CA}",
             f"ENV PATH={VENV}/bin:$PATH PIP_CERT={CA} SSL_CERT_FILE={CA}",
             "RUN --mount=type=cache,target=/var/cache/apt,sharing=locked "
             "rm -f /etc/apt/apt.conf.d/docker-clean && apt-get update "
             "&& DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "
             f"{words(packages.apt)} && rm -rf /var/lib/apt/lists/*",
             f"RUN python3 -m venv {VENV}"]
    for layer in packages.pip_layers:
        lines.append("RUN --mount=type=cache,target=/root/.cache/pip "
                     f"{VENV}/bin/pip install {words(layer)}")
    lines.append('CMD ["jupyter", "lab"]')
    return "\n".join(lines) + "\n"


def build(recipe: str, tag: str, ca_bundle: str) -> None:
    """`docker build` (BuildKit) of a recipe whose context is the CA bundle alone."""
    context = Path(tempfile.mkdtemp(prefix="imagekit-bench-alt-"))
    try:
        (context / "Dockerfile").write_text(recipe)
        shutil.copyfile(ca_bundle, context / "ca-bundle.crt")
        docker("build", "--progress", "plain", "-t", tag, str(context),
               env={"DOCKER_BUILDKIT": "1"})
    finally:
        shutil.rmtree(context, ignore_errors=True)
