"""Which engine a run gets, and what each says when it is missing or a build fails."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import docker
import docker.errors
import pytest

from imagekit.engine import choice
from imagekit.engine.podman import _failed_step
from imagekit.errors import ImagekitError
from imagekit.resolve import load_catalog

ROOT = Path(__file__).resolve().parents[2]


def test_an_unknown_engine_is_bad_input(cli: Callable[..., tuple[int, str]]) -> None:
    code, out = cli("build", "scipy", "--engine", "lxc")
    assert code == 2
    assert "--engine: 'lxc' is not one of auto, docker, podman" in out
    assert "Traceback" not in out


def test_the_catalog_names_its_engine(project: Path) -> None:
    catalog = project / "catalog.yaml"
    catalog.write_text(catalog.read_text() + "engine: podman\n")
    assert load_catalog(catalog).engine == "podman"
    catalog.write_text(catalog.read_text().replace("engine: podman", "engine: rkt"))
    with pytest.raises(ImagekitError) as caught:
        load_catalog(catalog)
    assert "engine" in str(caught.value.problems[0])


def test_auto_with_a_docker_host_set_never_falls_back_to_podman(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    with pytest.raises(ImagekitError) as caught:
        choice.connect(load_catalog(ROOT / "catalog.yaml"), "auto")
    assert "cannot reach the Docker engine" in str(caught.value.problems[0])


def test_auto_without_any_engine_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.setattr(docker, "from_env", lambda **_: (_ for _ in ()).throw(
        docker.errors.DockerException("no socket")))
    monkeypatch.setattr(choice, "podman_cli", lambda: None)
    with pytest.raises(ImagekitError) as caught:
        choice.connect(load_catalog(ROOT / "catalog.yaml"), "auto")
    message = str(caught.value.problems[0])
    assert "Docker does not answer" in message and "install podman" in message


def test_a_failed_podman_build_names_its_step() -> None:
    log = ["STEP 1/3: FROM imagekit/debian:bookworm", "STEP 2/3: RUN exit 3",
           'Error: building at STEP "RUN exit 3": while running runtime: exit status 3']
    assert _failed_step(log) == "RUN exit 3"
    assert _failed_step(log[:2]) == "STEP 2/3: RUN exit 3"


def test_each_user_gets_a_private_folder_for_podman_build_caches(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from imagekit.engine.podman import build_folder

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    folder = build_folder()
    assert folder == tmp_path / "cache/imagekit/podman-build"
    assert folder.stat().st_mode & 0o777 == 0o700
