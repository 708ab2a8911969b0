"""The batchspawner exports, loaded into the real wrapspawner and batchspawner.

ProfilesSpawner builds each profile's SlurmSpawner child, which renders its real batch
script. OptionsFormSpawner is not installable here: its file is read with `ast`, and its
script rendered by SlurmSpawner with the `req_image` trait OptionsFormSpawner would add.
"""

from __future__ import annotations

import ast
import asyncio
import getpass
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
from traitlets import Unicode
from traitlets.config import Config

from imagekit.exports import batchspawner
from imagekit.exports.common import slurm_cpus, slurm_memory
from imagekit.published.catalog import PublishedCatalog, PublishedImage, Sif, read
from tests.hub import SAMPLE, User

CMD = "batchspawner-singleuser jupyterhub-singleuser"
BINDS = "/etc/slurm,/var/run/munge,/var/lib/sss/pipes,/var/spool/slurm,/etc/munge"



@pytest.fixture
def published() -> PublishedCatalog:
    return read(SAMPLE)


def exec_config(text: str) -> Config:
    config = Config()
    exec(text, {"c": config})  # it is Python for jupyterhub_config.py
    return config


def render(spawner: Any) -> str:
    script: str = asyncio.run(spawner._get_batch_script(**spawner.get_req_subvars(), cmd=CMD))
    return script


def children(catalog: PublishedCatalog) -> dict[str, tuple[str, Any]]:
    """Each profile key -> (its display, the SlurmSpawner ProfilesSpawner makes for it)."""
    from jupyterhub.objects import Hub
    from wrapspawner import ProfilesSpawner

    config = exec_config(batchspawner.export(catalog)[0].text)
    assert config.JupyterHub.spawner_class == "wrapspawner.ProfilesSpawner"
    made: dict[str, tuple[str, Any]] = {}
    keys = [p[1] for p in config.ProfilesSpawner.profiles]
    for key in keys:
        wrapper = ProfilesSpawner(config=config, user=User(getpass.getuser()), hub=Hub())
        wrapper.user_options = wrapper.options_from_form({"profile": [key]})
        wrapper.construct_child()  # ProfilesSpawner's returns None: read the attribute
        child = wrapper.child_spawner
        made[key] = (next(p[0] for p in wrapper.profiles if p[1] == key), child)
    return made


def exec_line(script: str) -> list[str]:
    lines = [x for x in script.splitlines() if x.startswith("apptainer exec")]
    assert len(lines) == 1, script
    return shlex.split(lines[0])


def expected_exec(image: PublishedImage, sif: str, insecure: bool) -> list[str]:
    words = ["apptainer", "exec"]
    if insecure and sif.startswith("oras://"):
        words.append("--no-https")
    if image.gpu:
        words.append("--nv")
    if image.binds:
        words += ["--bind", ",".join(image.binds)]
    return [*words, sif, *CMD.split()]


def test_every_profile_renders_a_job_that_runs_its_sif(published: PublishedCatalog) -> None:
    from batchspawner import SlurmSpawner

    made = children(published)
    with_sif = [i for i in published.for_consumer("batchspawner") if i.sif]
    assert list(made) == ["scipy", "scipy-hpc", "pytorch-cuda"]  # the default first
    assert set(made) == {i.name for i in with_sif}
    for name, (display, child) in made.items():
        image = published.image(name)
        assert image.sif is not None
        assert isinstance(child, SlurmSpawner)
        assert display.startswith(f"{name}: ")
        script = render(child)
        assert exec_line(script) == expected_exec(image, image.sif.reference, True)
        assert f"#SBATCH --job-name=jupyterhub-{name}" in script
        assert "#SBATCH --time=04:00:00" in script
        assert f"#SBATCH --mem={slurm_memory(image.resources.memory)}\n" in script
        assert f"#SBATCH --cpus-per-task={slurm_cpus(image.resources.cpu)}\n" in script
        assert ("#SBATCH --gres=gpu:1" in script) == image.gpu
        assert ("--nv" in script) == image.gpu
    assert f"--bind {BINDS} oras://" in render(made["scipy-hpc"][1])


def test_the_rendered_script_is_valid_bash(published: PublishedCatalog, tmp_path: Path) -> None:
    for name, (_, child) in children(published).items():
        path = tmp_path / f"{name}.sbatch"
        path.write_text(render(child))
        subprocess.run(["bash", "-n", str(path)], check=True)


def with_shared_sifs(catalog: PublishedCatalog, secure: bool = False) -> PublishedCatalog:
    images = []
    for image in catalog.images:
        if image.sif is not None:
            sif: Sif = image.sif.model_copy(update={"path": f"/sw/sif dir/{image.sif.filename}"})
            image = image.model_copy(update={"sif": sif})
        images.append(image)
    return catalog.model_copy(update={"images": images, "registry_insecure": not secure})


def test_a_shared_sif_directory_is_used_as_is(published: PublishedCatalog) -> None:
    catalog = with_shared_sifs(published)
    for name, (_, child) in children(catalog).items():
        words = exec_line(render(child))
        assert "--no-https" not in words  # a file, not a pull
        assert words[-3] == f"/sw/sif dir/{name}_latest.sif"


def test_no_https_only_for_an_insecure_registry(published: PublishedCatalog) -> None:
    secure = published.model_copy(update={"registry_insecure": False})
    for name, (_, child) in children(secure).items():
        image = secure.image(name)
        assert image.sif is not None
        assert exec_line(render(child)) == expected_exec(image, image.sif.reference, False)


# --- OptionsFormSpawner -------------------------------------------------------------------

def options_form(catalog: PublishedCatalog) -> tuple[ast.Module, dict[str, Any]]:
    files = batchspawner.export(catalog)
    assert [f.name for f in files] == ["batchspawner.py", "optionsformspawner.py"]
    tree = ast.parse(files[1].text)
    assigned: dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign):
            assigned[ast.unparse(node.targets[0])] = node.value
    return tree, assigned


def test_options_form_offers_every_sif(published: PublishedCatalog) -> None:
    tree, assigned = options_form(published)
    imports = [n for n in tree.body if isinstance(n, ast.ImportFrom)]
    assert [(i.module, [a.name for a in i.names]) for i in imports] == [
        ("optionsspawner.forms", ["SelectField"])]
    assert ast.literal_eval(assigned["c.JupyterHub.spawner_class"]) == \
        "optionsspawner.OptionsFormSpawner"
    assert ast.literal_eval(assigned["c.OptionsFormSpawner.child_class"]) == \
        "batchspawner.SlurmSpawner"
    (field,) = assigned["c.OptionsFormSpawner.form_fields"].elts
    assert isinstance(field, ast.Call) and ast.unparse(field.func) == "SelectField"
    assert [ast.literal_eval(a) for a in field.args] == ["req_image"]
    keywords = {k.arg: ast.literal_eval(k.value) for k in field.keywords}
    with_sif = [i for i in published.for_consumer("batchspawner") if i.sif]
    assert {value for value, _ in keywords["choices"]} == \
        {i.sif.reference for i in with_sif if i.sif}
    scipy_sif = published.image("scipy").sif
    assert scipy_sif is not None and keywords["default"] == scipy_sif.reference
    assert keywords["default"] == keywords["choices"][0][0]
    assert all(label.startswith(value.split("/")[-1].split("@")[0] + ": ")
               for value, label in keywords["choices"])


def test_options_form_script_runs_the_chosen_sif(published: PublishedCatalog) -> None:
    """What OptionsFormSpawner does at start: the field becomes a trait of the child."""
    from batchspawner import SlurmSpawner
    from jupyterhub.objects import Hub

    for catalog in (published, with_shared_sifs(published, secure=True)):
        _, assigned = options_form(catalog)
        child_config = ast.literal_eval(assigned["c.OptionsFormSpawner.child_config"])
        for image in catalog.for_consumer("batchspawner"):
            assert image.sif is not None
            sif = image.sif.path or image.sif.reference
            child = SlurmSpawner(user=User(getpass.getuser()), hub=Hub(), **child_config)
            child.add_traits(req_image=Unicode(sif).tag(config=True))
            script = render(child)
            assert script.startswith("#!/bin/bash\n")
            assert exec_line(script) == expected_exec(image, sif, catalog.registry_insecure)
            assert ("#SBATCH --gres=gpu:1" in script) == image.gpu
            assert f"#SBATCH --job-name=jupyterhub-{image.name}\n" in script
        child = SlurmSpawner(user=User(getpass.getuser()), hub=Hub(), **child_config)
        child.add_traits(req_image=Unicode("/tmp/other.sif").tag(config=True))
        assert "no such image: /tmp/other.sif" in render(child)


def test_nothing_to_offer_is_said_in_both_files(published: PublishedCatalog) -> None:
    bare = published.model_copy(update={"images": [i.model_copy(update={"sif": None})
                                                   for i in published.images]})
    for file in batchspawner.export(bare):
        assert "no image with a SIF" in file.text
        ast.parse(file.text)
    assert batchspawner.export(published) == batchspawner.export(published)  # deterministic


# --- over SSH (`imagekit export batchspawner --ssh`) -----------------------------------

def test_over_ssh_the_commands_run_on_the_login_node_and_no_user_is_looked_up(
        published: PublishedCatalog, tmp_path: Path) -> None:
    from jupyterhub.objects import Hub
    from wrapspawner import ProfilesSpawner

    from imagekit.hpc import SshLogin

    ssh_config = tmp_path / "ssh_config"
    ssh_config.write_text("Host *\n")
    login = SshLogin.parse("svc@login.example:2222", ssh_config)
    config = exec_config(batchspawner.export(published, login)[0].text)
    wrapper = ProfilesSpawner(config=config, user=User("nobody-on-this-hub"), hub=Hub())
    key = config.ProfilesSpawner.profiles[0][1]
    wrapper.user_options = wrapper.options_from_form({"profile": [key]})
    wrapper.construct_child()
    child = wrapper.child_spawner
    # The same words batchspawner puts before sbatch/squeue/scancel, split by a shell.
    assert shlex.split(child.exec_prefix) == [
        "ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=20", "-o", "SendEnv=JUPYTERHUB_*",
        "-F",
        str(ssh_config.resolve()), "-p", "2222", "svc@login.example"]
    # squeue's format keeps its space through ssh and the login node's shell.
    query = child.batch_query_cmd.format(job_id="7")
    assert shlex.split(" ".join(shlex.split(query))) == ["squeue", "-h", "-j", "7", "-o",
                                                         "%T %B"]
    # A user unknown to the hub's passwd: the real SlurmSpawner would raise KeyError here.
    assert "HOME" not in child.get_env()
    script = render(child)
    assert "--chdir" not in script and "{{" not in script
    assert "#SBATCH --output=jupyterhub_slurmspawner_%j.log" in script
    assert exec_line(script)[:2] == ["apptainer", "exec"]


@pytest.mark.parametrize("config", ["/tmp/cfg{x}/ssh_config", "/tmp/{{username}}",
                                    "/tmp/a b", "/tmp/a'b"])
def test_an_ssh_config_path_that_batchspawner_would_reformat_is_refused(config: str) -> None:
    from imagekit.errors import ImagekitError
    from imagekit.hpc import SshLogin

    with pytest.raises(ImagekitError, match="--ssh-config"):
        SshLogin.parse("svc@login", Path(config))


@pytest.mark.parametrize("target", ["svc", "svc@", "@host", "svc@host;rm", "svc@host:0",
                                    "svc@host:99999", "svc@-oProxyCommand=x"])
def test_a_bad_ssh_target_is_refused(target: str) -> None:
    from imagekit.errors import ImagekitError
    from imagekit.hpc import SshLogin

    with pytest.raises(ImagekitError, match="--ssh"):
        SshLogin.parse(target)


def test_the_job_tells_ipyparallel_how_to_start_engines_in_the_same_image(
        published: PublishedCatalog, tmp_path: Path) -> None:
    """CONTAINER_EXEC holds the node's runtime, found when the job starts, with the flags."""
    (_, child) = next(iter(children(published).values()))
    script = render(child)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "apptainer").write_text("#!/bin/sh\n")
    (bin_dir / "apptainer").chmod(0o755)
    line = next(x for x in script.splitlines() if x.startswith("CONTAINER_EXEC="))
    body = f"set -euo pipefail; {line}; export CONTAINER_EXEC; printf %s \"$CONTAINER_EXEC\""
    shown = subprocess.run(["bash", "-c", body], capture_output=True, text=True, check=True,
                           env={"PATH": f"{bin_dir}:/usr/bin:/bin"}).stdout
    assert shown.startswith(f"{bin_dir}/apptainer exec ")
    assert shown.split()[1:] == exec_line(script)[1:-3]
    # No runtime on the node: the job stops there instead of handing engines " exec ...".
    missing = subprocess.run(["/bin/bash", "-c", body], capture_output=True, text=True,
                             env={"PATH": "/nonexistent"})
    assert missing.returncode != 0 and missing.stdout == ""
