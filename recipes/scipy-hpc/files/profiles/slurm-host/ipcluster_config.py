# IPyParallel profile "slurm": engines are Slurm jobs that start in the same container image
# as the notebook server. imagekit's batch scripts (batchspawner, `imagekit tunnel`) set
# CONTAINER_PATH (the SIF) and CONTAINER_EXEC (the node's runtime with its exec flags and
# binds, e.g. "/usr/bin/apptainer exec --bind /etc/slurm"); set them yourself elsewhere.
import os
import shlex

c = get_config()  # noqa: F821

c.Cluster.engine_launcher_class = "slurm"
# Engines are submitted from inside the notebook's own job. Its Slurm variables would pass
# on to them (SLURM_MEM_PER_NODE next to the engine job's own SLURM_MEM_PER_CPU makes srun
# refuse to start; CPUs per task would be asked again), and so would the notebook's
# JupyterHub token, which engines do not need: submit without them. SLURM_CONF stays.
_inherited = sorted(
    name for name in os.environ
    if (name.startswith(("SLURM_", "SBATCH_", "SRUN_")) and name != "SLURM_CONF")
    or name in ("JUPYTERHUB_API_TOKEN", "JPY_API_TOKEN")
)
c.SlurmEngineSetLauncher.submit_command = [
    "env", *(f"--unset={name}" for name in _inherited), "sbatch",
]
c.SlurmEngineSetLauncher.timelimit = os.environ.get("IPP_SLURM_TIME", "01:00:00")
_container = os.environ.get("CONTAINER_PATH")
if _container:
    _exec = os.environ.get("CONTAINER_EXEC", "").strip()
    if not _exec:
        _binds = os.environ.get("APPTAINER_BINDPATH") or os.environ.get("SINGULARITY_BINDPATH")
        _exec = "apptainer exec"  # the host's runtime is not visible from in here
        if _binds:
            _exec += f" --bind {shlex.quote(_binds)}"
    # The template is formatted by IPyParallel: braces in the values must be doubled.
    _line = f"srun {_exec} {shlex.quote(_container)}".replace("{", "{{").replace("}", "}}")
    c.SlurmEngineSetLauncher.batch_template = (
        "#!/bin/bash\n"
        "#SBATCH --job-name=ipengine\n"
        "#SBATCH --ntasks={n}\n"
        f"#SBATCH --time={c.SlurmEngineSetLauncher.timelimit}\n"
        f"{_line} ipengine --profile-dir={{profile_dir}} --cluster-id={{cluster_id}}\n"
    )
