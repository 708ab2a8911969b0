# Installed by imagekit's slurm-host profile as /usr/local/etc/jupyter/jupyter_server_config.py,
# which every Jupyter server in the image loads: start-notebook.sh's, jupyterhub-singleuser
# under batchspawner, `apptainer exec ... jupyter lab`. It gives the user IPyParallel's
# "slurm" profile (engines as Slurm jobs in this same image) unless they already have one:
# under Singularity/Apptainer $HOME is the user's own, not the image's.
import os
import shutil

_SOURCE = "/opt/imagekit/ipython/profile_slurm/ipcluster_config.py"


def _ipyparallel_slurm_profile() -> None:
    ipython_dir = os.environ.get("IPYTHONDIR") or os.path.join(os.path.expanduser("~"),
                                                               ".ipython")
    target = os.path.join(ipython_dir, "profile_slurm", "ipcluster_config.py")
    if os.path.exists(target):
        return
    try:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(_SOURCE, target)
    except OSError:
        pass  # a read-only home: the user can still pass profile_dir= to ipyparallel


_ipyparallel_slurm_profile()
