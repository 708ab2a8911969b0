# IPyParallel profile "slurm": engines are Slurm jobs that start in the same container image
# as the notebook server ($CONTAINER_PATH, set by the spawner's batch script or the user).
import os

c = get_config()  # noqa: F821

c.Cluster.engine_launcher_class = "slurm"
c.SlurmEngineSetLauncher.timelimit = os.environ.get("IPP_SLURM_TIME", "01:00:00")
_container = os.environ.get("CONTAINER_PATH")
_binds = os.environ.get("APPTAINER_BINDPATH") or os.environ.get("SINGULARITY_BINDPATH") or ""
if _container:
    _runtime = "apptainer" if os.path.exists("/usr/bin/apptainer") else "singularity"
    _bind = f"--bind {_binds} " if _binds else ""
    c.SlurmEngineSetLauncher.batch_template = (
        "#!/bin/bash\n"
        "#SBATCH --job-name=ipengine\n"
        "#SBATCH --ntasks={n}\n"
        f"#SBATCH --time={c.SlurmEngineSetLauncher.timelimit}\n"
        f"srun {_runtime} exec {_bind}{_container} "
        "ipengine --profile-dir={profile_dir} --cluster-id={cluster_id}\n"
    )
