# IPyParallel profile "slurm": engines are Slurm jobs that start in the same container image
# as the notebook server. imagekit's batch scripts (batchspawner, `imagekit tunnel`) set
# CONTAINER_PATH (the SIF) and CONTAINER_EXEC (the node's runtime with its exec flags and
# binds, e.g. "/usr/bin/apptainer exec --bind /etc/slurm"); set them yourself elsewhere.
import os
import shlex

c = get_config()  # noqa: F821

c.Cluster.engine_launcher_class = "slurm"
# Engines are submitted from inside the notebook's own job, whose SLURM_MEM_PER_* variables
# sbatch would pass on: next to the engine job's own, srun refuses to start ("mutually
# exclusive"). Submit without them.
c.SlurmEngineSetLauncher.submit_command = [
    "env", "-u", "SLURM_MEM_PER_CPU", "-u", "SLURM_MEM_PER_GPU", "-u", "SLURM_MEM_PER_NODE",
    "sbatch",
]
c.SlurmEngineSetLauncher.timelimit = os.environ.get("IPP_SLURM_TIME", "01:00:00")
_container = os.environ.get("CONTAINER_PATH")
if _container:
    _exec = os.environ.get("CONTAINER_EXEC", "").strip()
    if not _exec:
        _binds = os.environ.get("APPTAINER_BINDPATH") or os.environ.get("SINGULARITY_BINDPATH")
        _exec = "apptainer exec" if os.path.exists("/usr/bin/apptainer") else "singularity exec"
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
