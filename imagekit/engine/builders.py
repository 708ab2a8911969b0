"""Two ways to run a Dockerfile build, behind one interface.

* BuildKit, through a docker CLI that has it (`docker buildx build --load`, or a pre-23
  client such as Debian's 20.10 with DOCKER_BUILDKIT=1): cache mounts for apt/uv/npm,
  secrets for credentials, bind mounts for the wheelhouse.
* The classic builder, through the docker SDK: no cache mounts and no secrets. The recipe is
  rewritten for it (cache mounts dropped, the wheelhouse copied in instead of bind-mounted).

Neither tags anything: a build gives an image ID, and the caller tags only after success, so
a failed build moves no tag.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imagekit.engine.context import BuildContext
from imagekit.errors import BuildFailed, ImagekitError
from imagekit.run import run, tail

Progress = Callable[[str], None]


@dataclass(frozen=True)
class BuildRequest:
    name: str
    context: BuildContext
    labels: Mapping[str, str]
    build_args: Mapping[str, str] = field(default_factory=dict)
    secrets: Mapping[str, str] = field(default_factory=dict)  # id -> value
    # Registry images whose inline cache the build may reuse (CI runners with empty engines)
    cache_from: tuple[str, ...] = ()
    inline_cache: bool = False  # write the layer cache into the image's config for others
    platform: str | None = None  # another architecture's (run under emulation); None: native


class Builder(ABC):
    name: str
    description: str

    @abstractmethod
    def build(self, request: BuildRequest, progress: Progress) -> str:
        """Build and return the image ID; raise BuildFailed with the failing step."""


class BuildKitBuilder(Builder):
    name = "buildkit"

    def __init__(self, cli: str, buildx: bool, buildx_version: str = "") -> None:
        self.cli = cli
        self.buildx = buildx
        name = Path(cli).name
        self.description = (f"BuildKit via `{name} buildx build`"
                            + (f" (buildx {buildx_version})" if buildx_version else "")
                            if buildx else f"BuildKit via DOCKER_BUILDKIT=1 {name} build")

    def build(self, request: BuildRequest, progress: Progress) -> str:
        with tempfile.TemporaryDirectory(prefix="imagekit-build-") as tmp:
            iidfile = Path(tmp) / "iid"
            build_args = dict(request.build_args)
            if request.inline_cache:
                build_args["BUILDKIT_INLINE_CACHE"] = "1"
            # buildx would attach its own (unsigned) provenance, which with containerd's
            # image store makes every image an index holding an `unknown/unknown` entry
            # beside the image; imagekit publishes its own, signed, as a referrer instead.
            metadata = Path(tmp) / "metadata.json"
            buildx = ["buildx", "build", "--load", "--provenance=false", "--sbom=false",
                      "--metadata-file", str(metadata)]
            argv = [self.cli, *(buildx if self.buildx else ["build"]),
                    "--progress=plain", "--iidfile", str(iidfile),
                    *cli_args(request.labels, build_args, request.secrets, Path(tmp))]
            for ref in request.cache_from:
                argv += ["--cache-from", ref]
            if request.platform:
                argv += ["--platform", request.platform]
            argv.append("-")
            env = {**os.environ, **build_args, "DOCKER_BUILDKIT": "1"}
            status, log = stream(argv, env, progress, stdin=request.context.tar())
            if status != 0 or not iidfile.is_file():
                raise BuildFailed(f"{request.name}: build failed at "
                                  f"{_failed_step_buildkit(log)}\n{tail(chr(10).join(log), 30)}")
            return self._image_id(iidfile.read_text().strip(), metadata, env)

    def _image_id(self, iid: str, metadata: Path, env: Mapping[str, str]) -> str:
        """The engine's ID of what was loaded. buildx's iidfile names the image's config,
        which is its ID in dockerd's own image store; containerd's image store (Docker 29's
        default) names an image by its manifest, which buildx's metadata gives."""
        if not self.buildx or not metadata.is_file():
            return iid
        manifest = str(json.loads(metadata.read_text()).get("containerimage.digest") or "")
        for candidate in (iid, manifest):
            if candidate and run([self.cli, "image", "inspect", "--format", "{{.Id}}",
                                  candidate], check=False, timeout=60,
                                 env=dict(env)).returncode == 0:
                return candidate
        raise BuildFailed(f"the engine knows neither {iid} nor {manifest or 'a manifest'}, "
                          "which buildx says it loaded")


def cli_args(labels: Mapping[str, str], build_args: Mapping[str, str],
             secrets: Mapping[str, str], folder: Path) -> list[str]:
    """What a build CLI (docker's, podman's) is told of a request: labels, build arguments
    by name only (the CLI reads each value from its environment, so a proxy's credentials
    never show on a command line), and secrets as 0600 files in `folder`."""
    argv: list[str] = []
    for key, value in sorted(labels.items()):
        argv += ["--label", f"{key}={value}"]
    for key in sorted(build_args):
        argv += ["--build-arg", key]
    for secret_id, value in sorted(secrets.items()):
        secret_file = folder / f"secret-{secret_id}"
        secret_file.touch(mode=0o600)
        secret_file.write_text(value)
        argv += ["--secret", f"id={secret_id},src={secret_file}"]
    return argv


def stream(argv: list[str], env: Mapping[str, str], progress: Progress,
           stdin: bytes | None = None) -> tuple[int, list[str]]:
    """Run a build CLI, each output line to `progress` as it comes; its exit status and
    lines. Interrupted, the CLI is stopped (and cancels its build)."""
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE if stdin is not None
                            else subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=dict(env))
    assert proc.stdout is not None
    log: list[str] = []
    try:
        if stdin is not None:
            assert proc.stdin is not None
            try:
                proc.stdin.write(stdin)
                proc.stdin.close()
            except BrokenPipeError:
                pass
        for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip()
            log.append(line)
            progress(line)
        status = proc.wait()
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait()
    return status, log


def _failed_step_buildkit(log: list[str]) -> str:
    steps: dict[str, str] = {}
    for line in log:
        m = re.match(r"#(\d+) (\[.*)", line)
        if m:
            steps.setdefault(m.group(1), m.group(2))
        m = re.match(r"#(\d+) ERROR", line)
        if m and m.group(1) in steps:
            return steps[m.group(1)]
    for line in reversed(log):
        if "ERROR" in line or "error" in line:
            return line
    return "an unknown step"


class ClassicBuilder(Builder):
    name = "classic"
    description = "the docker SDK's classic builder (no cache mounts, no secrets)"

    def __init__(self, client: Any) -> None:
        self.client = client

    def build(self, request: BuildRequest, progress: Progress) -> str:
        if request.secrets:
            raise ImagekitError(
                f"{request.name}: the site passes {', '.join(sorted(request.secrets))} as build "
                "secrets, which the classic builder cannot keep out of the image: use "
                "--builder buildkit"
            )
        files = dict(request.context.files)
        files["Dockerfile"] = classic_dockerfile(files["Dockerfile"].decode()).encode()
        context = BuildContext(files, request.context.modes)
        log: list[str] = []
        image_id = None
        stream = self.client.api.build(
            fileobj=io.BytesIO(context.tar()), custom_context=True, rm=True, forcerm=True,
            decode=True, labels=dict(request.labels), buildargs=dict(request.build_args),
            cache_from=list(request.cache_from) or None, platform=request.platform,
        )
        for chunk in stream:
            if "stream" in chunk:
                for line in str(chunk["stream"]).splitlines():
                    if line.strip():
                        log.append(line)
                        progress(line)
            if "aux" in chunk and "ID" in chunk["aux"]:
                image_id = chunk["aux"]["ID"]
            if "error" in chunk:
                step = next((x for x in reversed(log) if x.startswith("Step ")), "unknown step")
                raise BuildFailed(f"{request.name}: build failed at {step}\n"
                                  f"{tail(chr(10).join(log), 30)}\n{chunk['error']}")
        if image_id is None:
            raise BuildFailed(f"{request.name}: the engine returned no image ID")
        return str(image_id)


_MOUNTS = re.compile(r"^(?P<run>RUN\s+)?(?P<mounts>(?:--mount=\S+\s*)+)(?P<rest>.*)$")


def classic_dockerfile(text: str) -> str:
    """Rewrite BuildKit-only RUN mounts for the classic builder.

    Cache and secret mounts are dropped; a bind mount becomes a COPY before its RUN. Mounts
    may stand on their own continuation lines (as imagekit renders them) or precede the
    command on one line.
    """
    out: list[str] = []
    copies: list[str] = []
    pending_run = False
    for line in text.split("\n"):
        m = _MOUNTS.match(line.strip())
        if m:
            pending_run = pending_run or bool(m.group("run"))
            for mount in re.findall(r"--mount=(\S+)", m.group("mounts")):
                opts = dict(o.split("=", 1) for o in mount.split(",") if "=" in o)
                if opts.get("type") == "bind":
                    copies.append(f"COPY {opts['source']} {opts['target']}")
            line = m.group("rest").strip()
            if line in ("", "\\"):
                continue
        if pending_run:
            out.extend(copies)
            out.append("RUN " + line.strip())
            copies, pending_run = [], False
            continue
        out.append(line)
    return "\n".join(out)


def _client_version(cli: str) -> tuple[int, ...]:
    result = run([cli, "version", "--format", "{{.Client.Version}}"], check=False, timeout=30)
    found = re.match(r"(\d+)\.(\d+)", result.stdout.decode())
    return tuple(int(x) for x in found.groups()) if found else (0,)


def find_buildkit() -> BuildKitBuilder | None:
    candidates = [c for c in (shutil.which("docker"), "/usr/bin/docker") if c]
    for cli in dict.fromkeys(candidates):
        if not os.access(cli, os.X_OK):
            continue
        said = run([cli, "buildx", "version"], check=False, timeout=30)
        if said.returncode == 0:
            # "github.com/docker/buildx 0.29.1+ds1 <commit>"
            words = said.stdout.decode(errors="replace").split()
            return BuildKitBuilder(cli, buildx=True,
                                   buildx_version=words[1] if len(words) > 1 else "")
        # Clients before 23 carry BuildKit themselves; later ones need the buildx plugin.
        if (1,) <= _client_version(cli) < (23,):
            return BuildKitBuilder(cli, buildx=False)
    return None


def choose(preference: str, client: Any) -> Builder:
    if preference not in ("auto", "buildkit", "classic"):
        raise ImagekitError(f"--builder: {preference!r} is not one of auto, buildkit, classic")
    if preference == "classic":
        return ClassicBuilder(client)
    buildkit = find_buildkit()
    if buildkit is not None:
        return buildkit
    if preference == "buildkit":
        raise ImagekitError("--builder buildkit: no docker CLI with BuildKit found (install "
                            "the buildx plugin, or Debian's docker.io for /usr/bin/docker)")
    return ClassicBuilder(client)
