"""Exec lines, the tunnel job and batchspawner's script, from the catalog's model."""

from __future__ import annotations

import asyncio
import shlex
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from imagekit import hpc
from imagekit.errors import ImagekitError
from imagekit.model import Catalog
from tests.hub import User

Cli = Callable[..., tuple[int, str]]
BINDS = "/etc/slurm,/var/run/munge,/var/lib/sss/pipes,/var/spool/slurm,/etc/munge"


def test_run_cmd_carries_the_profile_binds(catalog: Catalog) -> None:
    direct, by_env = hpc.run_cmd(catalog, catalog.images["scipy-hpc"], ["sbatch", "--version"],
                                 sif="/sw/scipy-hpc.sif")
    assert direct == f"singularity exec --bind {BINDS} /sw/scipy-hpc.sif sbatch --version"
    assert by_env == f"SINGULARITY_BINDPATH={BINDS} singularity exec /sw/scipy-hpc.sif " \
                     "sbatch --version"


def test_run_cmd_for_apptainer_and_gpu(catalog: Catalog) -> None:
    direct, by_env = hpc.run_cmd(catalog, catalog.images["pytorch-cuda"],
                                 ["python3", "-c", "import torch"], "apptainer", "/x.sif")
    assert direct == "apptainer exec --nv /x.sif python3 -c 'import torch'"
    assert by_env == direct  # no binds: nothing to put in APPTAINER_BINDPATH


def test_run_cmd_cli(cli: Cli, catalog: Catalog) -> None:
    code, out = cli("run-cmd", "scipy-hpc", "-c", str(catalog.file), "--", "jupyter", "lab")
    assert code == 0
    assert out.splitlines()[0].startswith(f"singularity exec --bind {BINDS} ")
    assert out.splitlines()[0].endswith("dist/scipy-hpc_latest.sif jupyter lab")
    assert out.splitlines()[1].startswith(f"SINGULARITY_BINDPATH={BINDS} singularity exec ")


def test_tunnel_script_is_valid_bash_with_the_job_options(catalog: Catalog,
                                                          tmp_path: Path) -> None:
    script = hpc.tunnel_script(catalog, catalog.images["pytorch-cuda"],
                               hpc.JobOptions("gpu", "08:00:00", "32G", 8, 1), "apptainer",
                               "/sw/pytorch-cuda.sif")
    for line in ("#SBATCH --partition=gpu", "#SBATCH --time=08:00:00", "#SBATCH --mem=32G",
                 "#SBATCH --cpus-per-task=8", "#SBATCH --gres=gpu:1", "unset XDG_RUNTIME_DIR",
                 "export CONTAINER_PATH=\"$SIF\""):
        assert line in script
    assert 'apptainer run --nv "$SIF" --ip="$NODE" --port="$PORT" &' in script
    path = tmp_path / "job.sbatch"
    path.write_text(script)
    subprocess.run(["bash", "-n", str(path)], check=True)


def test_tunnel_prints_then_runs_with_binds(catalog: Catalog, tmp_path: Path) -> None:
    script = hpc.tunnel_script(catalog, catalog.images["scipy-hpc"], hpc.JobOptions(),
                               "singularity", "/sw/hpc.sif")
    # Run it with a stand-in for singularity that records its arguments.
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "singularity").write_text('#!/bin/sh\necho "RAN: $*"\n')
    (fake / "singularity").chmod(0o755)
    job = tmp_path / "job.sbatch"
    job.write_text(script)
    out = subprocess.run(["bash", str(job)], capture_output=True, text=True, check=True, env={
        "PATH": f"{fake}:/usr/bin:/bin", "IMAGEKIT_NODE": "node7", "IMAGEKIT_PORT": "31337",
        "IMAGEKIT_LOGIN": "login1", "USER": "alice", "SLURM_JOB_ID": "99",
        "XDG_RUNTIME_DIR": "/run/user/1234", "TMPDIR": str(tmp_path)}).stdout
    assert "ssh -N -L 31337:node7:31337 alice@login1" in out
    token = out.split("token=")[1].split()[0]
    assert len(token) == 48
    assert f"RAN: run --bind {BINDS} /sw/hpc.sif --ip=node7 --port=31337" in out
    assert (tmp_path / "imagekit-jupyter-" f"{__import__('os').getuid()}-99").is_dir()


@pytest.mark.parametrize("bad", [{"time": "forever"}, {"mem": "8 G"},
                                 {"partition": "a;reboot"}])
def test_tunnel_rejects_bad_job_options(catalog: Catalog, bad: dict[str, Any]) -> None:
    options = hpc.JobOptions(**{"time": "01:00:00", **bad})
    with pytest.raises(ImagekitError):
        hpc.tunnel_script(catalog, catalog.images["scipy"], options)


def test_tunnel_submit_without_sbatch_says_so(cli: Cli, catalog: Catalog, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    code, out = cli("tunnel", "scipy", "--submit", "-o", str(tmp_path / "j.sbatch"),
                    "-c", str(catalog.file))
    assert code == 2 and "sbatch is not on PATH" in out
    assert (tmp_path / "j.sbatch").is_file()


def test_batchspawner_renders_the_container_before_the_singleuser(catalog: Catalog) -> None:
    """batchspawner's own SlurmSpawner renders the script from our config."""
    from batchspawner import SlurmSpawner
    from jupyterhub.objects import Hub

    config = hpc.batchspawner_config(catalog, catalog.images["scipy-hpc"], "apptainer",
                                     "/sw/hpc.sif", "normal")
    namespace: dict[str, Any] = {"c": _Config()}
    exec(config, namespace)  # it is Python for jupyterhub_config.py
    c = namespace["c"]
    assert c.JupyterHub.spawner_class == "batchspawner.SlurmSpawner"


    spawner = SlurmSpawner(user=User("root"), hub=Hub(), req_partition=c.SlurmSpawner.req_partition,
                           req_runtime=c.SlurmSpawner.req_runtime,
                           batch_script=c.SlurmSpawner.batch_script)
    cmd = "batchspawner-singleuser jupyterhub-singleuser"
    script = asyncio.run(spawner._get_batch_script(**spawner.get_req_subvars(), cmd=cmd))
    assert "#SBATCH --partition=normal" in script
    assert "#SBATCH --time=04:00:00" in script
    line = next(x for x in script.splitlines() if x.startswith("apptainer exec"))
    assert shlex.split(line) == ["apptainer", "exec", "--bind", BINDS, "/sw/hpc.sif",
                                 "batchspawner-singleuser", "jupyterhub-singleuser"]
    assert "export CONTAINER_PATH=/sw/hpc.sif" in script


class _Section:
    def __getattr__(self, name: str) -> Any:
        raise AttributeError(name)


class _Config:
    def __getattr__(self, name: str) -> Any:
        section = _Section()
        object.__setattr__(self, name, section)
        return section


def test_tunnel_prints_the_port_the_server_bound(catalog: Catalog, tmp_path: Path) -> None:
    """Another job took the chosen port first: Jupyter moved on, and the line follows it."""
    script = hpc.tunnel_script(catalog, catalog.images["scipy-hpc"], hpc.JobOptions(),
                               "singularity", "/sw/hpc.sif")
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "singularity").write_text(
        '#!/bin/sh\nprintf \'{\\n  "port": 40001,\\n  "token": "t"\\n}\\n\' '
        '> "$APPTAINERENV_JUPYTER_RUNTIME_DIR/jpserver-7.json"\nsleep 1\necho "RAN: $*"\n')
    (fake / "singularity").chmod(0o755)
    job = tmp_path / "job.sbatch"
    job.write_text(script)
    out = subprocess.run(["bash", str(job)], capture_output=True, text=True, check=True, env={
        "PATH": f"{fake}:/usr/bin:/bin", "IMAGEKIT_NODE": "node7", "IMAGEKIT_PORT": "31337",
        "IMAGEKIT_LOGIN": "login1", "USER": "alice", "SLURM_JOB_ID": "5",
        "TMPDIR": str(tmp_path)}).stdout
    assert "ssh -N -L 40001:node7:40001 alice@login1" in out
    assert "http://127.0.0.1:40001/lab?token=" in out
    assert "RAN: run --bind" in out and "--port=31337" in out


def test_the_plain_sif_is_the_catalogs_first_platforms(catalog: Catalog) -> None:
    """run-cmd, tunnel and the batch scripts name the SIF without a suffix: it must be the one
    the build writes for the catalog's first platform, whichever that is."""
    import dataclasses

    from imagekit.sif import sif_path

    arm_first = dataclasses.replace(catalog, platforms=("linux/arm64", "linux/amd64"))
    image = arm_first.images["scipy"]
    direct, _ = hpc.run_cmd(arm_first, image, ["bash"])
    written = sif_path(arm_first, image, platform="linux/arm64")
    assert direct.split()[-2] == str(written)
    assert written.name == f"scipy_{image.tags[0]}.sif"
    assert sif_path(arm_first, image, platform="linux/amd64").name.endswith("_amd64.sif")
