"""The format-neutral content of one image's recipe, computed once from the model.

Both renderers read a `RecipePlan`; neither looks at layers, profiles or inheritance. The
order of the phases follows how often things change (system packages, then language
packages, then files, labels last) so that the engine's layer cache stays warm.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from dataclasses import dataclass

from imagekit import __version__, lock
from imagekit.credentials import SiteUrl, public
from imagekit.model import Catalog, FileCopy, Image, Layer, MergedChecks, Runtime, arch
from imagekit.schema import Platform

CA_PATH = "/etc/imagekit/ca-bundle.crt"
WHEELHOUSE = "/tmp/imagekit-wheelhouse"
HOME_SEED = "/opt/imagekit/home-seed"
UV_CACHE = "/root/.cache/imagekit-uv"  # uv itself, by version, in a BuildKit cache mount
PYC_CACHE = "/root/.cache/imagekit-pyc"  # bytecode by distribution (render/bytecode.py)

# Every library and tool that reads a CA bundle from the environment, so that one site
# setting covers pip, uv, requests, curl, git, node and npm at build time and at run time.
CA_ENV = (
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
    "PIP_CERT",
    "CURL_CA_BUNDLE",
    "GIT_SSL_CAINFO",
    "NODE_EXTRA_CA_CERTS",
    "npm_config_cafile",
)


@dataclass(frozen=True)
class Script:
    name: str  # setup / post
    origin: str
    body: str


@dataclass(frozen=True)
class RecipePlan:
    image: str
    from_ref: str
    is_root: bool
    description: str
    args: tuple[tuple[str, str], ...]
    env: tuple[tuple[str, str], ...]
    ca_bundle: bool
    apt_sources: tuple[str, ...]
    apt_config: tuple[str, ...]  # /etc/apt/apt.conf.d/90imagekit in the root image
    dpkg_config: tuple[str, ...]  # /etc/dpkg/dpkg.cfg.d/90imagekit-<image>: path-excludes
    apt_auth: bool  # the apt mirror has credentials: apt steps mount them as a secret
    apt: tuple[str, ...]
    setup: tuple[Script, ...]
    pip: tuple[str, ...]
    locked: bool  # pip installs the stack's lock (pip/settled.lock, pip/added.lock), hashes checked
    lock_added: bool  # the lock has packages added since it was settled: pip/added.lock
    settled_parts: tuple[lock.SettledPart, ...]  # the settled part's layers, in order
    uv_version: str  # the lock's uv, which installs it ("" when unlocked)
    # The BuildKit cache holding uv's own binary is one per architecture: an amd64 uv found
    # there by an arm64 build cannot run (exit 127). amd64 keeps the default id (the path).
    uv_cache_id: str
    pip_prune: tuple[str, ...]  # find -path patterns under site-packages, removed after pip
    wheelhouse: bool
    no_index: bool  # air-gapped: the wheelhouse only
    npm: tuple[str, ...]
    npm_registry: str | None  # never with credentials
    npm_registry_secret: bool  # the registry has credentials: it comes as a build secret
    post: tuple[Script, ...]
    files: tuple[FileCopy, ...]
    mount_points: tuple[str, ...]
    runtime: Runtime
    checks: MergedChecks
    labels: tuple[tuple[str, str], ...]
    binds: tuple[str, ...]

    @property
    def finalize(self) -> tuple[str, ...]:
        """Last root steps: file modes, bind targets (sites often disable overlay, so they
        must exist in the image), and a copy of the home to seed an empty volume from."""
        steps = [f"chmod {f.mode} {shlex.quote(f.dest)}" for f in self.files]
        if self.mount_points:
            steps.append("mkdir -p " + " ".join(shlex.quote(m) for m in self.mount_points))
        uid, gid, home = self.runtime.uid, self.runtime.gid, self.home
        steps += [
            f"chown -R {uid}:{gid} {home}",
            f"chmod -R g+rwX {home}",
            f"rm -rf {HOME_SEED}",
            f"cp -a {home} {HOME_SEED}",
        ]
        return tuple(steps)

    @property
    def lock_dir(self) -> str:
        """Where the recipe's pip/ folder (the lock it installs from) stays in the image."""
        return f"/opt/imagekit/build/{self.image}-pip"

    @property
    def uv_tool(self) -> str:
        """Where the Dockerfile keeps uv between builds (a BuildKit cache, not the image)."""
        return f"{UV_CACHE}/{self.uv_version or 'unpinned'}"

    @property
    def venv_python(self) -> str:
        return f"{self.runtime.venv}/bin/python"

    @property
    def home(self) -> str:
        return f"/home/{self.runtime.user}"


def _dpkg_config(excluded: tuple[str, ...]) -> tuple[str, ...]:
    if not excluded:
        return ()
    return (*(f"path-exclude={glob}" for glob in excluded),
            "path-include=/usr/share/doc/*/copyright")


def _unique(items: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def plan(catalog: Catalog, image: Image, platform: Platform | None = None) -> RecipePlan:
    """What the recipes of `image` say; FROM names `platform`'s parent (default: the catalog's
    first platform's, which recipes/ holds)."""
    layers = image.layers
    is_root = image.parent is None
    site = catalog.site
    apt_sources, apt_config = _apt_sources(catalog) if is_root else ((), ())
    content = _Content.of(layers)
    pip = content.pip
    pins = lock.for_image(catalog, image)
    return RecipePlan(
        image=image.name,
        from_ref=catalog.parent_ref(image, platform),
        is_root=is_root,
        description=image.description,
        args=tuple(_merged(layer.args for layer in layers).items()),
        env=tuple(_env(catalog, image).items()),
        ca_bundle=is_root and site.ca_bundle is not None,
        apt_sources=apt_sources,
        apt_config=apt_config,
        dpkg_config=_dpkg_config(() if image.profiles else image.stack.apt_exclude),
        apt_auth=_has_credentials(site.apt_mirror),
        apt=content.apt,
        setup=content.setup,
        pip=pip,
        locked=pins is not None,
        lock_added=pins is not None and bool(pins.added),
        settled_parts=lock.settled_parts(image, pins) if pins is not None else (),
        uv_version=dict(pins.pins).get("uv", "") if pins is not None else "",
        uv_cache_id=_uv_cache_id(platform or catalog.platforms[0]),
        pip_prune=image.stack.pip_prune_all,
        wheelhouse=bool(pip) and site.find_links is not None,
        no_index=bool(pip) and site.pip_no_index,
        npm=content.npm,
        npm_registry=public(site.npm_registry),
        npm_registry_secret=_has_credentials(site.npm_registry),
        post=content.post,
        files=content.files,
        mount_points=content.mount_points,
        runtime=image.runtime,
        checks=image.checks,
        labels=tuple(_labels(catalog, image, platform).items()),
        binds=image.binds,
    )


@dataclass(frozen=True)
class _Content:
    """What an image's layers add, in layer order: packages and mount points each once."""

    apt: tuple[str, ...]
    setup: tuple[Script, ...]
    pip: tuple[str, ...]
    npm: tuple[str, ...]
    post: tuple[Script, ...]
    files: tuple[FileCopy, ...]
    mount_points: tuple[str, ...]

    @classmethod
    def of(cls, layers: tuple[Layer, ...]) -> _Content:
        return cls(
            apt=_unique([p for layer in layers for p in layer.apt]),
            setup=tuple(Script("setup", layer.origin, s) for layer in layers
                        for s in layer.setup),
            pip=_unique([p for layer in layers for p in layer.pip]),
            npm=_unique([p for layer in layers for p in layer.npm]),
            post=tuple(Script("post", layer.origin, s) for layer in layers for s in layer.post),
            files=tuple(f for layer in layers for f in layer.files),
            mount_points=_unique([b for layer in layers for b in layer.binds]),
        )


def _merged(pairs: Iterable[tuple[tuple[str, str], ...]]) -> dict[str, str]:
    """Key-value pairs of several layers, a later layer's value winning."""
    merged: dict[str, str] = {}
    for items in pairs:
        merged.update(items)
    return merged


def _env(catalog: Catalog, image: Image) -> dict[str, str]:
    """The recipe's ENV: the CA variables in the root image (where the site has a CA),
    then the layers' own."""
    ca = image.parent is None and catalog.site.ca_bundle
    return {**(dict.fromkeys(CA_ENV, CA_PATH) if ca else {}),
            **_merged(layer.env for layer in image.layers)}


def _apt_sources(catalog: Catalog) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The root image's apt sources and apt configuration, when the site has a mirror."""
    if not catalog.site.apt_mirror:
        return (), ()
    suite = catalog.base.bootstrap.suite if catalog.base.bootstrap else "bookworm"
    mirror = public(catalog.site.apt_mirror)
    sources = (f"deb {mirror} {suite} main", f"deb {mirror} {suite}-updates main")
    config = ('Acquire::Check-Valid-Until "false";',) if catalog.site.apt_snapshot else ()
    return sources, config


def _labels(catalog: Catalog, image: Image, platform: Platform | None) -> dict[str, str]:
    """OCI's labels, imagekit's, then the layers' own (which may override either)."""
    labels: dict[str, str] = {
        "org.opencontainers.image.title": image.name,
        "org.opencontainers.image.description": _first_sentence(image.description),
        "org.opencontainers.image.base.name": catalog.parent_ref(image, platform),
    }
    if catalog.vendor:
        labels["org.opencontainers.image.vendor"] = catalog.vendor
    if catalog.source:
        labels["org.opencontainers.image.source"] = catalog.source
    labels.update({
        "io.imagekit.image": image.name,
        "io.imagekit.stack": image.stack.name,
        "io.imagekit.parent": image.parent or "",
        "io.imagekit.profiles": ",".join(p.name for p in image.profiles),
        "io.imagekit.type": image.runtime.type,
        "io.imagekit.gpu": str(image.runtime.gpu).lower(),
        "io.imagekit.port": str(image.runtime.port),
        "io.imagekit.binds": ",".join(image.binds),
        "io.imagekit.generator": f"imagekit {__version__}",
    })
    return {**labels, **_merged(layer.labels for layer in image.layers)}


def _uv_cache_id(platform: Platform) -> str:
    # The BuildKit cache of uv's binary is one per architecture (see RecipePlan.uv_cache_id).
    return "" if arch(platform) == "amd64" else f"imagekit-uv-{arch(platform)}"


def _has_credentials(url: str | None) -> bool:
    return url is not None and SiteUrl(url).has_credentials


def _first_sentence(text: str) -> str:
    line = " ".join(text.split())
    end = line.find(". ")
    return line if end < 0 else line[: end + 1]


def combined_script(image: str, scripts: tuple[Script, ...]) -> str:
    """One bash script running each step in its own subshell, so a `cd` does not leak."""
    out = [
        "#!/bin/bash",
        f"# {scripts[0].name} steps of image {image}, generated by imagekit from the catalog.",
        "set -euo pipefail",
    ]
    for script in scripts:
        out += ["", f"# --- from {script.origin}", "(", script.body.rstrip("\n"), ")"]
    return "\n".join(out) + "\n"
