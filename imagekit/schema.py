"""The shape of the files a site writes: catalog.yaml, stacks/*.yaml, profiles/*.yaml.

Pydantic does the type, required-field and unknown-key work (and gives us a JSON Schema for
editors for free); the validators here hold the rules that keep every value safe to put into
a Dockerfile, a Singularity definition or a shell line. Nothing here resolves inheritance:
that is `resolve.py`'s job.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

NotebookType = Literal["jupyter", "code-server", "rstudio"]
Format = Literal["docker", "sif"]
SifCompression = Literal["gzip", "zstd"]
LayerCompression = Literal["gzip", "zstd"]
ZSTD_LAYER_LEVELS = (3, 19)  # the image layers' zstd level: default, highest
# Each compression's default level (measured: docs/admin.md, "SIF compression") and highest.
SIF_LEVELS: dict[str, tuple[int, int]] = {"gzip": (5, 9), "zstd": (3, 22)}
# The architectures imagekit builds for: amd64, and arm64 (NVIDIA Grace Hopper, Isambard-AI,
# ARM laptops), the latter under emulation (qemu-user-static) on an amd64 machine.
Platform = Literal["linux/amd64", "linux/arm64"]


def _pattern(regex: str, what: str, example: str) -> AfterValidator:
    compiled = re.compile(regex)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise ValueError(f"{value!r} is not a valid {what} (e.g. {example})")
        return value

    return AfterValidator(check)


_PIP_SPEC = r"(===|==|>=|<=|~=|!=|<|>)[A-Za-z0-9.*+!_-]+"

Name = Annotated[
    str,
    _pattern(r"[a-z0-9][a-z0-9._-]{0,62}", "name (lowercase letters, digits, . _ -)", "scipy"),
]
AptPackage = Annotated[
    str,
    _pattern(
        r"[a-z0-9][a-z0-9+.-]+(=[A-Za-z0-9.+~:-]+)?",
        "Debian package (name, optionally =version)",
        "r-base-core or openjdk-17-jre-headless",
    ),
]
PipRequirement = Annotated[
    str,
    _pattern(
        rf"[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9._-]+(,[A-Za-z0-9._-]+)*\])?"
        rf"({_PIP_SPEC}(,{_PIP_SPEC})*)?",
        "pip requirement (name, optional [extras], optional version pins)",
        "numpy or scipy>=1.11,<2",
    ),
]
PipName = Annotated[
    str,
    _pattern(r"[A-Za-z0-9][A-Za-z0-9._-]*", "pip project name (no version, no extras)",
             "rfc3987-syntax"),
]
PipNamePattern = Annotated[
    str,
    _pattern(r"[A-Za-z0-9*?][A-Za-z0-9._*?-]*",
             "pip project name or glob of names (letters, digits, '.', '_', '-', '*', '?')",
             "nvidia-cudnn-*"),
]
NpmPackage = Annotated[
    str,
    _pattern(
        r"(@[a-z0-9][a-z0-9._-]*/)?[a-z0-9][a-z0-9._-]*(@[A-Za-z0-9.^~*_-]+)?",
        "npm package (optionally @scope/ and @version)",
        "code-server@4.96.4",
    ),
]
EnvName = Annotated[
    str, _pattern(r"[A-Za-z_][A-Za-z0-9_]*", "environment variable name", "NB_USER")
]
ArgName = Annotated[str, _pattern(r"[A-Z_][A-Z0-9_]*", "build argument name", "RSTUDIO_DEB_URL")]
AbsPath = Annotated[
    str,
    _pattern(
        r"/(?!.*(^|/)\.\.(/|$))[A-Za-z0-9._/@+-]*",
        "absolute path without '..' or special characters",
        "/etc/slurm",
    ),
]
PathGlob = Annotated[
    str,
    _pattern(r"/(?!.*(^|/)\.\.(/|$))[A-Za-z0-9._/@+*?-]*",
             "absolute path or glob without '..', spaces or quotes", "/usr/share/doc/*"),
]
SitePattern = Annotated[
    str,
    _pattern(r"(?!.*(^|/)\.\.(/|$))[A-Za-z0-9_*?][A-Za-z0-9._/*?-]*",
             "path pattern inside site-packages (find -path; no '..', no leading '/')",
             "*/tests"),
]
RelPath = Annotated[
    str,
    _pattern(
        r"(?!/)(?!.*(^|/)\.\.(/|$))[A-Za-z0-9._/@+-]+",
        "path relative to the stacks/files or profiles/files folder",
        "base/start-notebook.sh",
    ),
]
Token = Annotated[
    str,
    _pattern(r"[A-Za-z0-9._/=:@+,-]+", "command word (no spaces or shell characters)", "tini"),
]
LabelKey = Annotated[
    str, _pattern(r"[a-z0-9][a-z0-9._-]*", "label key", "org.opencontainers.image.vendor")
]
ImageRef = Annotated[
    str,
    _pattern(
        r"[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*(:[A-Za-z0-9_.-]{1,128})?",
        "image reference",
        "imagekit/debian:bookworm",
    ),
]
Tag = Annotated[str, _pattern(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", "image tag", "2026.11")]
Url = Annotated[
    str,
    _pattern(
        r"(https?|file)://[A-Za-z0-9._~:/?#@!%+=,-]+",
        "URL (http, https or file; no quotes, spaces or shell characters)",
        "https://deb.debian.org/debian",
    ),
]
Mode = Annotated[str, _pattern(r"0?[0-7]{3}", "file mode", "0755")]


# Apptainer's definition parser (pkg/build/types/parser/deffile.go) starts a new section at
# any line whose first word begins with '%', however far it is indented, and substitutes
# '{{ NAME }}' anywhere in the file as a build argument. Every value below may land in a
# .def, so none may carry either; scripts must also not end the heredoc they sit in.
BUILD_ARG = ("{{", "}}")
HEREDOC_ENDS = ("IMAGEKIT_SETUP", "IMAGEKIT_POST")


def _no_build_args(value: str) -> None:
    for bad in BUILD_ARG:
        if bad in value:
            raise ValueError(f"may not contain {bad!r}: apptainer reads '{{{{ NAME }}}}' in a "
                             "definition as a build argument")


def _one_line(value: str) -> str:
    for bad in ('"', "\\", "`", "$(", "\n", "\r"):
        if bad in value:
            raise ValueError(f"{value!r} may not contain {bad!r}")
    _no_build_args(value)
    return value


def _text(value: str) -> str:
    for bad in ('"', "\\", "`", "$", "\r"):
        if bad in value:
            raise ValueError(f"text may not contain {bad!r}")
    _no_build_args(value)
    # Help text is re-wrapped, so any word may come to start a line of %help.
    for word in value.split():
        if word.startswith("%"):
            raise ValueError(f"word {word!r} starts with '%': wrapped to the start of a line "
                             "of %help, it would start a Singularity section")
    return value


def _script(value: str) -> str:
    # Scripts are written by the stack's author and run as-is; the rules only stop them from
    # breaking the Singularity definition they are pasted into.
    _no_build_args(value)
    if "\r" in value:
        raise ValueError("carriage return in a script (CRLF line endings?): use plain newlines")
    for number, line in enumerate(value.split("\n"), 1):
        words = line.split()
        if words and words[0].startswith("%"):
            raise ValueError(f"line {number} {line.strip()!r}: a line whose first word starts "
                             "with '%' starts a Singularity section, indented or not")
        if line.strip() in HEREDOC_ENDS:
            raise ValueError(f"line {number} {line.strip()!r} would end the heredoc the "
                             "Singularity definition runs the script in")
    if not value.strip():
        raise ValueError("script is empty")
    return value


OneLine = Annotated[str, AfterValidator(_one_line)]
Text = Annotated[str, AfterValidator(_text)]
Script = Annotated[str, AfterValidator(_script)]
ArgValue = Annotated[
    str,
    _pattern(r"[A-Za-z0-9._~:/?#@!%+=,-]*", "build argument value (no spaces or quotes)", "1.2.3"),
]


class Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class FileSpec(Spec):
    src: RelPath = Field(description="source, relative to stacks/files (or profiles/files)")
    dest: AbsPath = Field(description="absolute destination in the image")
    mode: Mode = "0644"


class CommandCheck(Spec):
    run: OneLine = Field(description="shell command run inside the image")
    expect: OneLine = Field("", description="text the output must contain")


class HttpCheck(Spec):
    path: AbsPath = Field(description="path on the server (below its base URL)")
    status: int = Field(200, ge=100, le=599)
    contains: OneLine = ""
    server: Literal["main", "jupyter"] = Field(
        "main", description="the image's main app, or the Jupyter server every image has"
    )


class ExecuteCheck(Spec):
    kernel: Name = Field(description="kernelspec name, e.g. python3 or ir")
    code: OneLine = Field(description="code the kernel executes")
    expect: OneLine = Field(description="text the kernel's output must contain")


class Checks(Spec):
    imports: list[Annotated[str, _pattern(r"[A-Za-z_][A-Za-z0-9_.]*", "module", "numpy")]] = []
    commands: list[CommandCheck] = []
    kernels: list[Name] = []
    http: list[HttpCheck] = []
    execute: list[ExecuteCheck] = []


class VersionTag(Spec):
    """A tag computed by running a command in the built image (e.g. python-3.11)."""

    prefix: Tag
    run: OneLine = Field(description="command whose stdout (first line) is the version")


class Healthcheck(Spec):
    path: AbsPath = "/api"
    prefixed: bool = Field(True, description="served under NB_PREFIX / the hub prefix")


class Layer(Spec):
    """What a stack or a profile adds on top of what it is layered onto."""

    description: Text = ""
    apt: list[AptPackage] = []
    setup: list[Script] = Field([], description="root shell steps after apt, before pip")
    pip: list[PipRequirement] = []
    npm: list[NpmPackage] = []
    post: list[Script] = Field([], description="root shell steps after pip/npm")
    env: dict[EnvName, OneLine] = {}
    args: dict[ArgName, ArgValue] = Field({}, description="build arguments with defaults")
    files: list[FileSpec] = []
    labels: dict[LabelKey, OneLine] = {}
    checks: Checks = Checks()


class StackSpec(Layer):
    extends: Name | None = Field(None, description="parent stack; only the root has none")
    type: NotebookType | None = None
    gpu: bool | None = None
    port: int | None = Field(None, ge=1, le=65535)
    entrypoint: list[Token] | None = None
    command: list[Token] | None = None
    user: Name | None = None
    uid: int | None = Field(None, ge=1)
    gid: int | None = Field(None, ge=0)
    venv: AbsPath | None = None
    healthcheck: Healthcheck | None = None
    version_tags: list[VersionTag] = []
    apt_exclude: list[PathGlob] = Field(
        [], description="paths dpkg leaves out of every package installed in this stack and "
        "the stacks below it (dpkg path-exclude; copyright files are always kept)")
    pip_prune: list[SitePattern] = Field(
        [], description="paths inside site-packages removed right after every pip install "
        "in this stack and below it, before the layer is written (find -path patterns)")
    pip_exclude: list[PipName] = Field(
        [], description="pip packages never installed, even when a dependency's optional "
        "extra asks for them (inherited by every child stack; applied when locking)")
    pip_layers: list[PipNamePattern] = Field(
        [], description="the stack's locked pip packages that go in layers of their own, "
        "below the rest of its install: one layer per pattern, in this order, each package "
        "in the layer of the first pattern its name matches (fnmatch on the normalised "
        "name). For closures of gigabytes (CUDA): a first pull unpacks one layer while it "
        "downloads the next. This stack's own; not inherited")


class Proxy(Spec):
    http: Url | None = None
    https: Url | None = None
    no_proxy: Annotated[str, _pattern(r"[A-Za-z0-9.,*_:/-]*", "no_proxy list", "localhost")] = ""


class SiteSettings(Spec):
    ca_bundle: str | None = Field(
        None, description="host path of a PEM CA bundle put in the image and used by builds"
    )
    proxy: Proxy | None = None
    apt_mirror: Url | None = None
    apt_snapshot: bool = Field(
        False, description="apt_mirror is a dated snapshot (e.g. https://snapshot.debian.org/"
                           "archive/debian/20261101T000000Z): the same packages on every "
                           "build; its Release files expire by design, so apt is told not "
                           "to refuse them")
    pip_index_url: Url | None = Field(
        None, description="may carry credentials: passed to builds as a BuildKit secret"
    )
    pip_extra_index_url: Url | None = None
    find_links: str | None = Field(None, description="host folder of wheels (a wheelhouse)")
    pip_no_index: bool = Field(
        False, description="air-gapped: install from the wheelhouse (find_links) only, never "
                           "from a package index")
    npm_registry: Url | None = None


class ProfileSpec(Layer):
    site: SiteSettings = SiteSettings()
    binds: list[AbsPath] = Field([], description="host paths bound in at run time")


def _no_userinfo(value: str) -> str:
    if "@" in value.split("://", 1)[-1].split("/", 1)[0]:
        raise ValueError("may not carry credentials (user:password@): debootstrap gets it on "
                         "its command line; use a mirror that needs none for the base")
    return value


class Bootstrap(Spec):
    suite: Name = "bookworm"
    mirror: Annotated[Url, AfterValidator(_no_userinfo)] = "http://deb.debian.org/debian"
    variant: Literal["minbase", "buildd", "fakechroot"] = "minbase"


class BaseImage(Spec):
    image: ImageRef = Field(description="the root stack's FROM")
    pull: bool = True
    bootstrap: Bootstrap | None = Field(None, description="allowed when the pull fails")
    max_age_days: int | None = Field(
        None, ge=1, description="`imagekit build` refuses a base older than this (Debian's "
                                "security updates reach the tree only through a fresh base): "
                                "`imagekit base --refresh` renews it")


Consumer = Literal["kubespawner", "dockerspawner", "kubeflow", "workspacekind", "setting",
                   "batchspawner", "armada"]
_CPU = re.compile(r"[0-9]+(\.[0-9]{1,3})?|[0-9]+m")
_MEMORY = re.compile(r"[0-9]+(Ki|Mi|Gi|Ti|K|M|G|T)?")


def _cpu(value: str | int | float) -> str:
    text = str(value)
    if isinstance(value, bool) or not _CPU.fullmatch(text) or float(text.rstrip("m")) <= 0:
        raise ValueError(f"{value!r} is not a CPU quantity (e.g. 2, 0.5 or 500m)")
    return text


def _memory(value: str) -> str:
    if not _MEMORY.fullmatch(value) or not int(value.rstrip("KMGTi")):
        raise ValueError(f"{value!r} is not a memory quantity (e.g. 4Gi or 512Mi)")
    return value


class ResourcesSpec(Spec):
    """What a notebook server of the image gets: requests equal limits where consumers allow."""

    cpu: Annotated[str | int | float, AfterValidator(_cpu)] | None = Field(
        None, description="CPU cores, a Kubernetes quantity: 2, 0.5 or 500m")
    memory: Annotated[str, AfterValidator(_memory)] | None = Field(
        None, description="memory, a Kubernetes quantity: 4Gi, 512Mi")
    gpus: int | None = Field(None, ge=0, description="NVIDIA GPUs; default 1 for GPU images")


class SifSpec(Spec):
    directory: AbsPath | None = Field(
        None, description="the cluster's shared SIF directory; unset: jobs pull the SIF's "
                          "oras:// reference from the registry")
    compression: SifCompression = Field(
        "gzip", description="the squashfs's compression. gzip: every Apptainer and "
                            "SingularityCE runs it. zstd: faster to make and smaller, run by "
                            "Apptainer >= 1.4 only (SingularityCE refuses it, and so does a "
                            "squashfuse or kernel built without zstd)")
    level: int | None = Field(None, ge=1, le=22, description="its level (gzip 1-9, zstd "
                                                             "1-22); default: gzip 5, zstd 3")


class LayersSpec(Spec):
    compression: LayerCompression = Field(
        "gzip", description="the image layers' compression in the registry. gzip: the engine "
                            "compresses them as it pushes (Docker and Podman of every version "
                            "pull them). zstd: imagekit compresses each layer once, on all "
                            "cores, and pushes an OCI manifest: faster to push and to pull, "
                            "pulled by Docker >= 23, Podman, containerd >= 1.5 and CRI-O, "
                            "refused by Docker 20.10 (Debian bookworm's docker.io)")
    level: int | None = Field(None, ge=1, le=ZSTD_LAYER_LEVELS[1],
                              description="zstd's level (1-19; default 3); gzip layers are "
                                          "compressed at the engine's own level")


class ImageSpec(Spec):
    name: Name | None = Field(None, description="defaults to the stack's name")
    stack: Name
    profiles: list[Name] = []
    formats: list[Format] = ["docker"]
    tags: list[Tag] = []
    description: Text = ""
    publish: bool = True
    resources: ResourcesSpec | None = Field(None, description="default: the type's resources")
    consumers: list[Consumer] | None = Field(
        None, description="who gets the image; default: every consumer that can run it "
                          "(container consumers for Docker images, batchspawner for SIFs)")
    platforms: list[Platform] | None = Field(
        None, min_length=1, description="narrows the catalog's platforms for this image (a "
                                        "stack whose packages exist for one architecture)")


class CatalogSpec(Spec):
    registry: Annotated[str, _pattern(r"[a-z0-9.-]+(:[0-9]+)?", "registry host", "ghcr.io")]
    insecure_registry: bool = Field(
        False, description="the registry speaks plain HTTP (only on loopback or a trusted "
                           "network); credentials come from the Docker config or "
                           "IMAGEKIT_REGISTRY_USERNAME/IMAGEKIT_REGISTRY_PASSWORD, never here")
    resources: dict[NotebookType, ResourcesSpec] = Field(
        {}, description="default resources per notebook type")
    engine: Literal["auto", "docker", "podman"] = Field(
        "auto", description="the container engine that builds, tests and pushes: auto takes "
                            "Docker when it answers, else Podman (--engine and IMAGEKIT_ENGINE "
                            "say otherwise for one run)")
    sif: SifSpec = SifSpec()
    layers: LayersSpec = LayersSpec()
    platforms: list[Platform] = Field(
        ["linux/amd64"], min_length=1,
        description="the architectures every image is built, tested, converted and published "
                    "for; the first is the one local tags name without a suffix")
    namespace: Name
    base: BaseImage
    site_profiles: list[Name] = Field([], description="profiles applied to every image")
    tags: list[Tag] = ["latest"]
    images: list[ImageSpec]
    defaults: dict[NotebookType, Name] = {}
    source: OneLine = ""
    vendor: OneLine = ""
