"""Running SIF images on Slurm clusters: exec lines, the SSH-tunnel job, batchspawner.

Everything here is derived from the image's model: its binds (the slurm-host profile's
host services), whether it needs a GPU (`--nv`), its port, and where its SIF is published.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from imagekit.errors import ImagekitError, Problem
from imagekit.files import writable
from imagekit.model import Catalog, Image
from imagekit.said import Said
from imagekit.sif import sif_path

RUNTIMES = ("apptainer", "singularity")
BATCH_TIME = "04:00:00"  # req_runtime of a JupyterHub job when nothing else is said
_SLURM_TIME = re.compile(r"(\d+-)?\d{1,2}(:\d{2}){0,2}")
_SLURM_MEM = re.compile(r"\d+[KMGT]?")
_PARTITION = re.compile(r"[A-Za-z0-9_.,-]+")
_SSH_TARGET = re.compile(r"(?P<user>[a-z_][a-z0-9_.-]{0,31})@(?P<host>[A-Za-z0-9]"
                         r"[A-Za-z0-9.-]{0,252})(?::(?P<port>[0-9]{1,5}))?")
LOGIN_SPAWNER = "LoginNodeSlurmSpawner"
# batchspawner registers the hub's /hub/api/batchspawner handler (where the job reports its
# port) when it is imported; a wrapper spawner imports it only at the first spawn, too late.
IMPORT_BATCHSPAWNER = "import batchspawner  # noqa: F401  (registers the hub's batchspawner API)"
# What batchspawner must carry over SSH to the login node: the job exports them by name
# (`--export={{keepvars}}`), so sbatch there needs their values. SendEnv passes them in the
# SSH protocol, never on a command line; the login node's sshd must AcceptEnv them.
SSH_SEND_ENV = "JUPYTERHUB_*"
_SAFE_PATH = re.compile(r"[A-Za-z0-9/._+-]+")


@dataclass(frozen=True)
class JobOptions:
    partition: str | None = None
    time: str = "04:00:00"
    mem: str | None = None
    cpus: int | None = None
    gpus: int | None = None

    def validate(self) -> None:
        problems = []
        if self.partition is not None and not _PARTITION.fullmatch(self.partition):
            problems.append(f"--partition: {self.partition!r} is not a partition name")
        if not _SLURM_TIME.fullmatch(self.time):
            problems.append(f"--time: {self.time!r} is not a Slurm time (e.g. 04:00:00)")
        if self.mem is not None and not _SLURM_MEM.fullmatch(self.mem):
            problems.append(f"--mem: {self.mem!r} is not a Slurm size (e.g. 8G)")
        if problems:
            raise ImagekitError("\n".join(problems))


@dataclass(frozen=True)
class SshLogin:
    """batchspawner's Slurm commands run on a login node over SSH, as one service account."""

    user: str
    host: str
    port: int | None = None
    config: str | None = None  # an ssh_config(5) file: key, known hosts, jump hosts...

    @classmethod
    def from_options(cls, ssh: str | None, config: Path | None) -> SshLogin | None:
        """`--ssh USER@HOST[:PORT]` and `--ssh-config FILE` as given; None without `--ssh`."""
        if ssh is None:
            if config is not None:
                raise ImagekitError(Problem(None, "--ssh-config", "needs --ssh USER@HOST"))
            return None
        return cls.parse(ssh, config)

    @classmethod
    def parse(cls, target: str, config: Path | None = None) -> SshLogin:
        match = _SSH_TARGET.fullmatch(target)
        if match is None:
            raise ImagekitError(f"--ssh: {target!r} is not USER@HOST or USER@HOST:PORT")
        port = int(match["port"]) if match["port"] else None
        if port is not None and not 0 < port < 65536:
            raise ImagekitError(f"--ssh: port {port} is out of range")
        if config is not None and not _SAFE_PATH.fullmatch(str(config)):
            # batchspawner formats exec_prefix (str.format, or Jinja at "{{"): no braces.
            raise ImagekitError(f"--ssh-config: {str(config)!r} may hold only letters, "
                                "digits and / . _ + - (no spaces, braces or quotes)")
        if config is not None and not config.is_file():
            raise ImagekitError(f"--ssh-config: {config} is not a file")
        return cls(match["user"], match["host"], port,
                   str(config.resolve()) if config is not None else None)

    def exec_prefix(self) -> str:
        """batchspawner's exec_prefix: `ssh ... USER@HOST`, before sbatch/squeue/scancel."""
        words = ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=20", "-o",
                 f"SendEnv={SSH_SEND_ENV}"]
        if self.config:
            words += ["-F", self.config]
        if self.port:
            words += ["-p", str(self.port)]
        return shlex.join([*words, f"{self.user}@{self.host}"])


def login_spawner_lines() -> list[str]:
    """jupyterhub_config.py source: SlurmSpawner for users the hub has no account for.

    SlurmSpawner looks the hub user up in the hub's passwd (for HOME, SHELL and the job's
    directory); with Slurm reached over SSH the users live on the cluster only.
    """
    return [
        "from traitlets import default",
        "",
        "",
        f"class {LOGIN_SPAWNER}(batchspawner.SlurmSpawner):",
        '    """Slurm over SSH: no local account for the user on the hub; the job runs as the',
        '    login node\'s service account and starts in its home."""',
        "",
        "    def user_env(self, env):",
        "        return env",
        "",
        '    @default("req_homedir")',
        "    def _no_local_home(self):",
        '        return ""',
        "",
        "",
    ]


def _runtime(runtime: str) -> str:
    if runtime not in RUNTIMES:
        raise ImagekitError(f"--runtime: {runtime!r} is not apptainer or singularity")
    return runtime


def exec_argv(runtime: str, sif: str, *, gpu: bool, binds: Sequence[str],
              flags: Sequence[str] = ()) -> list[str]:
    """`RUNTIME exec [FLAGS] [--nv] [--bind A,B] SIF` as argv words, from plain values."""
    words = [_runtime(runtime), "exec", *flags]
    if gpu:
        words.append("--nv")
    if binds:
        words += ["--bind", ",".join(binds)]
    return [*words, sif]


def exec_words(image: Image, sif: str, runtime: str = "singularity") -> list[str]:
    """`singularity exec [--nv] [--bind A,B] IMAGE.sif` for this image, as argv words."""
    return exec_argv(runtime, sif, gpu=image.runtime.gpu, binds=image.binds)


def run_cmd(catalog: Catalog, image: Image, command: list[str], runtime: str = "singularity",
            sif: str | None = None) -> tuple[str, str]:
    """The exec line, and the same with the binds in APPTAINER_BINDPATH/SINGULARITY_BINDPATH."""
    path = sif or str(sif_path(catalog, image))
    direct = shlex.join([*exec_words(image, path, runtime), *command])
    env_name = "APPTAINER_BINDPATH" if runtime == "apptainer" else "SINGULARITY_BINDPATH"
    words = [runtime, "exec", *(["--nv"] if image.runtime.gpu else []), path, *command]
    by_env = shlex.join(words)
    if image.binds:
        by_env = f"{env_name}={shlex.quote(','.join(image.binds))} {by_env}"
    return direct, by_env


def tunnel_script(catalog: Catalog, image: Image, options: JobOptions,
                  runtime: str = "apptainer", sif: str | None = None) -> str:
    """An sbatch script: free port, ssh line and URL printed, the SIF served on the node."""
    path = sif or str(sif_path(catalog, image).resolve())
    return job_script(Served(image.name, image.runtime.type, image.runtime.gpu,
                             tuple(image.binds)), path, options, runtime)


def exec_lines(catalog: Catalog, name: str, command: list[str], runtime: str,
               sif: str | None) -> Said:
    """`imagekit run-cmd`: `run_cmd`'s two lines for the named image."""
    return Said(run_cmd(catalog, catalog.select([name])[0], command, runtime, sif))


def spawner(catalog: Catalog, name: str, runtime: str, sif: str | None, partition: str | None,
            ssh: SshLogin | None) -> Said:
    """`imagekit spawner batchspawner`: the named image's configuration, printed as it is."""
    return Said(text=batchspawner_config(catalog, catalog.select([name])[0], runtime, sif,
                                         partition, ssh))


def tunnel(catalog: Catalog, name: str, options: JobOptions, runtime: str, sif: str | None,
           output: Path | None, submit_it: bool, say: Callable[[str], None],
           warn: Callable[[str], None]) -> Said:
    """`imagekit tunnel`: the image's job script, printed or, with `output` or `submit_it`,
    written (and then submitted with sbatch)."""
    image = catalog.select([name])[0]
    if options.gpus and not image.runtime.gpu:
        warn(f"warning: {name} is not a GPU image; --gpus adds --gres only")
    script = tunnel_script(catalog, image, options, runtime, sif)
    target = output or (Path(f"imagekit-{image.name}.sbatch") if submit_it else None)
    if target is None:
        return Said(text=script)
    write_script(writable(target), script)
    say(f"wrote {target}")
    return Said([submit(target)] if submit_it else [])


@dataclass(frozen=True)
class Served:
    """What a tunnel job needs to know of an image (from the model or the published
    catalog, which both hold names to schema.Name: a name goes into #SBATCH lines)."""
    name: str
    type: str
    gpu: bool
    binds: tuple[str, ...] = ()


def job_script(image: Served, path: str, options: JobOptions, runtime: str = "apptainer",
               flags: Sequence[str] = (), origin: str = "`imagekit tunnel`") -> str:
    """The tunnel job for `path`: a SIF file, or an `oras://...@sha256:` reference that
    `flags` (e.g. --no-https) let the runtime pull."""
    options.validate()
    run_words = [_runtime(runtime), "run", *flags]
    if image.gpu:
        run_words.append("--nv")
    if image.binds:
        run_words += ["--bind", ",".join(image.binds)]
    directives = [f"#SBATCH --job-name=imagekit-{image.name}",
                  f"#SBATCH --time={options.time}",
                  f"#SBATCH --output=imagekit-{image.name}-%j.log"]
    if options.partition:
        directives.append(f"#SBATCH --partition={options.partition}")
    if options.mem:
        directives.append(f"#SBATCH --mem={options.mem}")
    if options.cpus:
        directives.append(f"#SBATCH --cpus-per-task={options.cpus}")
    if options.gpus:
        directives.append(f"#SBATCH --gres=gpu:{options.gpus}")
    lines = [
        "#!/bin/bash",
        f"# {image.name}: a notebook server on a compute node, reached through an SSH tunnel.",
        f"# Generated by {origin}; submit with sbatch, then read the job's log.",
        *directives,
        "set -euo pipefail",
        "",
        f"SIF={shlex.quote(path)}",
        "# IPyParallel engines (Slurm jobs started from the notebook) run in the same image,",
        "# through the same runtime as this job found it on this node.",
        "export CONTAINER_PATH=\"$SIF\"",
        f"CONTAINER_EXEC={container_exec(runtime, image.gpu, image.binds, flags)}",
        "export CONTAINER_EXEC",
        "NODE=\"${IMAGEKIT_NODE:-$(hostname -s)}\"",
        "LOGIN=\"${IMAGEKIT_LOGIN:-${SLURM_SUBMIT_HOST:-login}}\"",
        "",
        "# A free port on this node, asked of the kernel rather than guessed. Another job may",
        "# take it before the server binds it: the server then moves on (port_retries), and",
        "# the port printed below is the one it reports having bound.",
        "PORT=\"${IMAGEKIT_PORT:-$(python3 -c 'import socket; s = socket.socket(); "
        "s.bind((\"\", 0)); print(s.getsockname()[1])' 2>/dev/null || "
        "echo $(( 20000 + RANDOM % 20000 )))}\"",
        "TOKEN=\"$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \\n')\"",
        "",
        "# The host's /run/user/UID does not exist inside the container and breaks Jupyter.",
        "unset XDG_RUNTIME_DIR",
        "export JUPYTER_RUNTIME_DIR="
        "\"${TMPDIR:-/tmp}/imagekit-jupyter-$(id -u)-${SLURM_JOB_ID:-$$}\"",
        "mkdir -p \"$JUPYTER_RUNTIME_DIR\"",
        "# Passed into the container even with --cleanenv.",
        "export APPTAINERENV_JUPYTER_TOKEN=\"$TOKEN\" SINGULARITYENV_JUPYTER_TOKEN=\"$TOKEN\"",
        "export APPTAINERENV_JUPYTER_RUNTIME_DIR=\"$JUPYTER_RUNTIME_DIR\"",
        "export SINGULARITYENV_JUPYTER_RUNTIME_DIR=\"$JUPYTER_RUNTIME_DIR\"",
        "",
        f"{shlex.join(run_words)} \"$SIF\" --ip=\"$NODE\" --port=\"$PORT\" &",
        "SERVER=$!",
        "trap 'kill -TERM \"$SERVER\" 2>/dev/null' TERM INT",
        "cat <<EOF",
        "On your own machine, open the tunnel:",
        "    ssh -N -L ${PORT}:${NODE}:${PORT} ${USER:-$(id -un)}@${LOGIN}",
        "then browse to:",
        "    http://127.0.0.1:${PORT}/lab?token=${TOKEN}",
        "EOF",
        "",
        "INFO=",
        "for _ in $(seq 1 {waits}); do",
        "    INFO=\"$(ls \"$JUPYTER_RUNTIME_DIR\"/jpserver-*.json 2>/dev/null "
        "| head -n 1 || true)\"",
        "    [ -n \"$INFO\" ] || ! kill -0 \"$SERVER\" 2>/dev/null && break",
        "    sleep 0.5",
        "done",
        "if [ -n \"$INFO\" ]; then",
        "    BOUND=\"$(sed -n 's/.*\"port\": *\\([0-9][0-9]*\\).*/\\1/p' \"$INFO\" | head -n 1)\"",
        "    if [ -n \"$BOUND\" ] && [ \"$BOUND\" != \"$PORT\" ]; then",
        "        echo \"The port was taken; the server listens on $BOUND instead:\"",
        "        echo \"    ssh -N -L ${BOUND}:${NODE}:${BOUND} ${USER:-$(id -un)}@${LOGIN}\"",
        "        echo \"    http://127.0.0.1:${BOUND}/{path}?token=${TOKEN}\"",
        "    fi",
        "fi",
        "",
        "wait \"$SERVER\"",
        "",
    ]
    # Only a Jupyter server writes jpserver-PID.json; other apps keep the port they were given.
    waits = 600 if image.type == "jupyter" else 0
    where = "lab" if image.type == "jupyter" else ""
    lines = [line.replace("{waits}", str(waits)).replace("/{path}?", f"/{where}?")
             for line in lines]
    if image.type != "jupyter":
        lines[lines.index("    http://127.0.0.1:${PORT}/lab?token=${TOKEN}")] = (
            "    http://127.0.0.1:${PORT}/?token=${TOKEN}")
    return "\n".join(lines)


def container_exec(runtime: str, gpu: bool, binds: Sequence[str],
                   flags: Sequence[str] = ()) -> str:
    """A shell word: `"$(command -v RUNTIME) exec FLAGS"` as found on the node at job start.

    The image's IPyParallel profile reads it (with CONTAINER_PATH) to start engines as Slurm
    jobs in the same image: the container cannot know where the host keeps its runtime.
    """
    runtime_word, *words = exec_argv(runtime, "-", gpu=gpu, binds=binds, flags=flags)[:-1]
    return f'"$(command -v {runtime_word})"' + shlex.quote(" " + shlex.join(words))


def batch_script(name: str, sif: str, *, binds: Sequence[str] = (), gpu: bool = False,
                 runtime: str = "apptainer", exec_flags: Sequence[str] = (),
                 login: bool = False) -> str:
    """batchspawner's `batch_script` (a Jinja template it fills from the req_* traits).

    The container wraps the single-user command, so batchspawner-singleuser (and
    jupyterhub-singleuser after it) run inside the image: `{{cmd}}` comes after the SIF.
    `sif` is whatever `RUNTIME exec` accepts: a file, or an `oras://...@sha256:` reference.
    `login`: submitted over SSH by a login-node account, so the hub knows no home directory
    for the user: the job starts (and logs) in the submitting account's home.
    """
    words = shlex.join(exec_argv(runtime, sif, gpu=gpu, binds=binds, flags=exec_flags))
    home = "" if login else "{{homedir}}/"
    chdir = [] if login else ["#SBATCH --chdir={{homedir}}"]
    return "\n".join([
        "#!/bin/bash",
        f"#SBATCH --output={home}jupyterhub_slurmspawner_%j.log",
        f"#SBATCH --job-name=jupyterhub-{name}",
        *chdir,
        "#SBATCH --export={{keepvars}}",
        "#SBATCH --get-user-env=L",
        "{% if partition %}#SBATCH --partition={{partition}}{% endif %}",
        "{% if runtime %}#SBATCH --time={{runtime}}{% endif %}",
        "{% if memory %}#SBATCH --mem={{memory}}{% endif %}",
        "{% if gres %}#SBATCH --gres={{gres}}{% endif %}",
        "{% if nprocs %}#SBATCH --cpus-per-task={{nprocs}}{% endif %}",
        "{% if reservation %}#SBATCH --reservation={{reservation}}{% endif %}",
        "{% if options %}#SBATCH {{options}}{% endif %}",
        "set -euo pipefail",
        "",
        "unset XDG_RUNTIME_DIR",
        "trap 'echo SIGTERM received' TERM",
        "{{prologue}}",
        "# IPyParallel engines (Slurm jobs started from the notebook) run in the same image,",
        "# through the runtime found here (after the prologue, which may load it).",
        f"export CONTAINER_PATH={shlex.quote(sif)}",
        f"CONTAINER_EXEC={container_exec(runtime, gpu, binds, exec_flags)}",
        "export CONTAINER_EXEC",
        f"{words} {{{{cmd}}}}",
        "echo \"jupyterhub-singleuser ended gracefully\"",
        "{{epilogue}}",
    ])


def batchspawner_config(catalog: Catalog, image: Image, runtime: str = "apptainer",
                        sif: str | None = None, partition: str | None = None,
                        ssh: SshLogin | None = None) -> str:
    """jupyterhub_config.py lines for batchspawner's SlurmSpawner running this SIF."""
    path = sif or str(sif_path(catalog, image).resolve())
    if partition is not None and not _PARTITION.fullmatch(partition):
        raise ImagekitError(f"--partition: {partition!r} is not a partition name")
    script = batch_script(image.name, path, binds=image.binds, gpu=image.runtime.gpu,
                          runtime=runtime, login=ssh is not None)
    lines = [
        f"# JupyterHub + batchspawner.SlurmSpawner for image {image.name}",
        "# (generated by `imagekit spawner batchspawner`; paste into jupyterhub_config.py)",
        IMPORT_BATCHSPAWNER,
    ]
    if ssh is None:
        lines.append('c.JupyterHub.spawner_class = "batchspawner.SlurmSpawner"')
    else:
        lines += [*login_spawner_lines(), f"c.JupyterHub.spawner_class = {LOGIN_SPAWNER}",
                  *ssh_lines(ssh)]
    lines += [
        "c.Spawner.http_timeout = 300  # queue waits",
        "c.Spawner.start_timeout = 600",
    ]
    if partition:
        lines.append(f"c.SlurmSpawner.req_partition = {partition!r}")
    lines += [
        f"c.SlurmSpawner.req_runtime = {BATCH_TIME!r}",
        f'c.SlurmSpawner.batch_script = """{script}\n"""',
        "",
    ]
    return "\n".join(lines)


# SlurmSpawner's query: ssh hands the remote shell one string, which splits it again, so
# the command goes as one quoted word (the format's space survives).
SLURM_QUERY = "squeue -h -j {job_id} -o '%T %B'"


def ssh_lines(ssh: SshLogin) -> list[str]:
    return [
        f"# sbatch, squeue and scancel run on {ssh.host} as {ssh.user}; its sshd must",
        f"# `AcceptEnv {SSH_SEND_ENV}` (the job's JupyterHub variables travel that way).",
        "# Only JUPYTERHUB_* reach the job: c.Spawner.environment values would need SendEnv/",
        "# AcceptEnv too. All hub users share the account: for users who trust each other.",
        f"c.SlurmSpawner.exec_prefix = {ssh.exec_prefix()!r}",
        "# Quoted once more for the login node's shell (wrong without the ssh prefix).",
        f"c.SlurmSpawner.batch_query_cmd = {shlex.quote(SLURM_QUERY)!r}",
    ]


def write_script(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o755)


def submit(script: Path) -> str:
    """sbatch the script; return sbatch's answer (the job ID line)."""
    if shutil.which("sbatch") is None:
        raise ImagekitError(f"--submit: sbatch is not on PATH (is this a Slurm login node?); "
                            f"submit {script} by hand")
    result = subprocess.run(["sbatch", str(script)], capture_output=True, text=True)
    if result.returncode != 0:
        raise ImagekitError(f"sbatch {script}: {result.stderr.strip()}")
    return result.stdout.strip()
