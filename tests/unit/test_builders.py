"""Given a build request, when a builder runs it, then the build sees the context, labels,
build arguments and secrets, and a failure names its step. No engine: BuildKit's docker CLI
is a stand-in script, the classic builder's SDK client a stub stream."""

from __future__ import annotations

import io
import json
import stat
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest

from imagekit.engine.builders import (
    BuildKitBuilder,
    BuildRequest,
    ClassicBuilder,
    _failed_step_buildkit,
    choose,
)
from imagekit.engine.context import EXECUTABLE, REGULAR, BuildContext
from imagekit.errors import BuildFailed, ImagekitError

DOCKERFILE = (b"FROM debian\n"
              b"RUN --mount=type=cache,target=/root/.cache \\\n"
              b"    --mount=type=bind,source=wheelhouse,target=/w \\\n"
              b"    true\n")
CONTEXT = BuildContext({"Dockerfile": DOCKERFILE, "wheelhouse/.keep": b"", "bin/x": b"#!"},
                       {"Dockerfile": REGULAR, "wheelhouse/.keep": REGULAR, "bin/x": EXECUTABLE})

# Records what `docker buildx build` was given, then behaves as told by FAKE_DOCKER_FAIL.
FAKE_DOCKER = """\
import io, json, os, stat, sys, tarfile
argv = sys.argv[1:]
context = sys.stdin.buffer.read()
with tarfile.open(fileobj=io.BytesIO(context)) as tar:
    names = tar.getnames()
secrets = {}
for i, arg in enumerate(argv):
    if arg == "--secret":
        opts = dict(o.split("=", 1) for o in argv[i + 1].split(","))
        secrets[opts["id"]] = {"value": open(opts["src"]).read(), "src": opts["src"],
                               "mode": stat.S_IMODE(os.stat(opts["src"]).st_mode)}
record = {"argv": argv, "names": names, "secrets": secrets,
          "buildkit": os.environ.get("DOCKER_BUILDKIT"),
          "proxy": os.environ.get("HTTP_PROXY")}
json.dump(record, open(os.environ["FAKE_DOCKER_RECORD"], "w"))
print("#1 [internal] load build definition from Dockerfile")
print("#5 [2/3] RUN apt-get install -y nothing")
if os.environ.get("FAKE_DOCKER_FAIL"):
    print("#5 ERROR: process did not complete successfully: exit code: 100")
    sys.exit(1)
iid = argv[argv.index("--iidfile") + 1]
open(iid, "w").write("sha256:feedface\\n")
"""


@pytest.fixture
def fake_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    script = tmp_path / "docker"
    script.write_text(f"#!{sys.executable}\n{FAKE_DOCKER}")
    script.chmod(0o755)
    record = tmp_path / "record.json"
    monkeypatch.setenv("FAKE_DOCKER_RECORD", str(record))
    monkeypatch.delenv("FAKE_DOCKER_FAIL", raising=False)
    return script, record


def request(**changes: Any) -> BuildRequest:
    fields: dict[str, Any] = {
        "name": "tiny", "context": CONTEXT,
        "labels": {"io.imagekit.cache-key": "k" * 64, "b.label": "two words"},
        "build_args": {"HTTP_PROXY": "http://proxy:3128"},
        "secrets": {"pip_index_url": "https://alice:pw@pypi.example.org/simple"},
    }
    return BuildRequest(**(fields | changes))


def test_buildkit_gets_the_context_labels_args_and_secrets(fake_cli: tuple[Path, Path]) -> None:
    script, record = fake_cli
    lines: list[str] = []
    image_id = BuildKitBuilder(str(script), buildx=True).build(request(), lines.append)
    assert image_id == "sha256:feedface"
    assert "#5 [2/3] RUN apt-get install -y nothing" in lines
    seen = json.loads(record.read_text())
    argv = seen["argv"]
    # No attestation of buildx's own: the image stays one manifest in every image store.
    assert argv[:5] == ["buildx", "build", "--load", "--provenance=false", "--sbom=false"]
    assert argv[5] == "--metadata-file" and argv[7] == "--progress=plain"
    assert argv[-1] == "-"
    assert argv[argv.index("--label"):][:2] == ["--label", "b.label=two words"]
    assert argv[argv.index("--build-arg") + 1].startswith("HTTP_PROXY")
    assert seen["names"] == ["Dockerfile", "bin", "bin/x", "wheelhouse", "wheelhouse/.keep"]
    assert seen["buildkit"] == "1"
    secret = seen["secrets"]["pip_index_url"]
    assert secret["value"] == "https://alice:pw@pypi.example.org/simple"
    assert secret["mode"] == 0o600
    assert not Path(secret["src"]).exists()  # gone with the build's temporary folder
    assert not any("alice:pw" in arg for arg in argv)


def test_buildkit_without_buildx_uses_plain_build(fake_cli: tuple[Path, Path]) -> None:
    script, record = fake_cli
    builder = BuildKitBuilder(str(script), buildx=False)
    assert "DOCKER_BUILDKIT=1" in builder.description
    builder.build(request(secrets={}), lambda line: None)
    assert json.loads(record.read_text())["argv"][:2] == ["build", "--progress=plain"]


def test_a_failed_buildkit_build_names_its_step(fake_cli: tuple[Path, Path],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    script, _ = fake_cli
    monkeypatch.setenv("FAKE_DOCKER_FAIL", "1")
    with pytest.raises(BuildFailed) as raised:
        BuildKitBuilder(str(script), buildx=True).build(request(), lambda line: None)
    assert "tiny: build failed at [2/3] RUN apt-get install -y nothing" in str(raised.value)
    assert "exit code: 100" in str(raised.value)


def test_the_failed_step_from_a_buildkit_log() -> None:
    log = ["#4 [1/3] FROM debian", "#6 [3/3] RUN false", "#6 ERROR: exit code: 1"]
    assert _failed_step_buildkit(log) == "[3/3] RUN false"
    assert _failed_step_buildkit(["ERROR: failed to solve: no such file"]) == (
        "ERROR: failed to solve: no such file")
    assert _failed_step_buildkit(["all good"]) == "an unknown step"


class StubApi:
    """The docker SDK's low-level `api.build`, as a recorded call and a canned stream."""

    def __init__(self, chunks: list[dict[str, Any]]) -> None:
        self.chunks = chunks
        self.calls: list[dict[str, Any]] = []

    def build(self, **kwargs: Any) -> list[dict[str, Any]]:
        self.calls.append(kwargs)
        return self.chunks


class StubClient:
    def __init__(self, chunks: list[dict[str, Any]]) -> None:
        self.api = StubApi(chunks)


def sent_dockerfile(call: dict[str, Any]) -> str:
    with tarfile.open(fileobj=call["fileobj"]) as tar:
        member = tar.extractfile("Dockerfile")
        assert member is not None
        return member.read().decode()


def test_classic_gets_the_rewritten_recipe_labels_and_args() -> None:
    client = StubClient([{"stream": "Step 1/3 : FROM debian\n"}, {"aux": {"ID": "sha256:c1"}},
                         {"stream": "Successfully built c1\n"}])
    lines: list[str] = []
    image_id = ClassicBuilder(client).build(request(secrets={}), lines.append)
    assert image_id == "sha256:c1"
    assert lines == ["Step 1/3 : FROM debian", "Successfully built c1"]
    call = client.api.calls[0]
    assert call["labels"]["b.label"] == "two words"
    assert call["buildargs"] == {"HTTP_PROXY": "http://proxy:3128"}
    text = sent_dockerfile(call)
    assert "--mount" not in text and "COPY wheelhouse /w\nRUN true" in text


def test_a_failed_classic_build_names_its_step() -> None:
    client = StubClient([{"stream": "Step 1/3 : FROM debian\n"},
                         {"stream": "Step 2/3 : RUN false\n"},
                         {"error": "The command '/bin/sh -c false' returned a non-zero code: 1"}])
    with pytest.raises(BuildFailed) as raised:
        ClassicBuilder(client).build(request(secrets={}), lambda line: None)
    assert "tiny: build failed at Step 2/3 : RUN false" in str(raised.value)
    assert "non-zero code: 1" in str(raised.value)


def test_a_classic_build_without_an_image_id_fails() -> None:
    with pytest.raises(BuildFailed, match="no image ID"):
        ClassicBuilder(StubClient([])).build(request(secrets={}), lambda line: None)


def test_classic_refuses_secrets_before_building() -> None:
    client = StubClient([])
    with pytest.raises(ImagekitError, match="pip_index_url") as raised:
        ClassicBuilder(client).build(request(), lambda line: None)
    assert not isinstance(raised.value, BuildFailed)
    assert client.api.calls == []


def test_choose_a_builder() -> None:
    assert isinstance(choose("classic", object()), ClassicBuilder)
    with pytest.raises(ImagekitError, match="not one of auto, buildkit, classic"):
        choose("kaniko", object())


def test_the_context_tar_given_to_builders_keeps_modes() -> None:
    with tarfile.open(fileobj=io.BytesIO(CONTEXT.tar())) as tar:
        assert stat.S_IMODE(tar.getmember("bin/x").mode) == 0o755
