"""The pages of the catalog site, from the published catalog alone."""

from __future__ import annotations

import functools
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import jinja2

from imagekit import hpc
from imagekit.errors import BuildFailed
from imagekit.published.catalog import PublishedCatalog, PublishedImage, dist_of, read
from imagekit.said import Said
from imagekit.units import human_size

TEMPLATES = Path(__file__).parent / "templates"
TYPE_NAMES = {"jupyter": "JupyterLab", "code-server": "VS Code (code-server)",
              "rstudio": "RStudio Server"}
CONSUMER_NAMES = {
    "kubespawner": ("JupyterHub with KubeSpawner (z2jh)", ["kubespawner.yaml",
                                                           "kubespawner.py"]),
    "dockerspawner": ("JupyterHub with DockerSpawner", ["dockerspawner.py"]),
    "kubeflow": ("Kubeflow Notebooks (spawner UI)", ["kubeflow.yaml"]),
    "workspacekind": ("Kubeflow Workspaces (WorkspaceKind)", ["workspacekind.yaml"]),
    "setting": ("oneblock / LLMOS Setting default-notebook-images", ["setting.yaml",
                                                                     "setting-llmos.yaml"]),
    "armada": ("Armada", ["armada.yaml", "armada-submit.yaml"]),
    "batchspawner": ("JupyterHub with batchspawner on Slurm", ["batchspawner.py",
                                                              "optionsformspawner.py"]),
}


@dataclass(frozen=True)
class Command:
    title: str
    text: str
    note: str = ""
    download: str = ""  # a file of the site the command needs


def commands(catalog: PublishedCatalog, image: PublishedImage) -> list[Command]:
    """Copy-paste commands that run this very image (by digest)."""
    gpu = " --gpus all" if image.gpu else ""
    port = image.port
    out = [Command("Docker", f"docker run --rm{gpu} -p {port}:{port} {image.reference}",
                   f"then open the URL with the token the server prints (port {port})")]
    if image.sif is not None:
        nv = " --nv" if image.gpu else ""
        binds = "".join(f" --bind {b}" for b in image.binds)
        https = " --no-https" if catalog.registry_insecure else ""
        where = image.sif.path or image.sif.filename
        if image.sif.path is None:
            out.append(Command("Apptainer / Singularity: fetch the SIF",
                               f"apptainer pull{https} {image.sif.filename} "
                               f"{image.sif.reference}",
                               f"sha256 {image.sif.sha256}"))
        out += [
            Command("Apptainer / Singularity: run the server",
                    f"apptainer run{nv}{binds} {where}",
                    "`singularity` takes the same arguments"),
            Command("Apptainer / Singularity: one command in the image",
                    f"apptainer exec{nv}{binds} {where} python3 --version"),
            Command("Slurm, through an SSH tunnel: submit the batch job",
                    f"sbatch {tunnel_file(image)}",
                    "the batch job runs this very SIF, by its digest; no imagekit needed. "
                    f"Its log, imagekit-{image.name}-JOBID.log, names the tunnel and the URL",
                    download=tunnel_file(image)),
            Command("Slurm, through an SSH tunnel: on your own machine",
                    "ssh -N -L PORT:NODE:PORT USER@LOGIN",
                    "the line to copy is in the job's log, with the port and node filled "
                    "in; then open the URL it prints, token included"),
        ]
    return out


def tunnel_file(image: PublishedImage) -> str:
    return f"{image.name}.sbatch"


def tunnel_script(catalog: PublishedCatalog, image: PublishedImage) -> str:
    """`imagekit tunnel`'s batch job for a published SIF, by its digest: what a cluster's
    user downloads from the site and submits without imagekit."""
    assert image.sif is not None
    flags = ["--no-https"] if catalog.registry_insecure else []
    served = hpc.Served(image.name, image.type, image.gpu, tuple(image.binds))
    return hpc.job_script(served, image.sif.path or image.sif.reference, hpc.JobOptions(),
                          flags=flags if image.sif.path is None else [],
                          origin="imagekit's catalog site from the published catalog")


def hubs(image: PublishedImage) -> list[tuple[str, list[str]]]:
    return [CONSUMER_NAMES[c] for c in image.consumers if c in CONSUMER_NAMES]


@functools.cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES),
                             undefined=jinja2.StrictUndefined, autoescape=True,
                             trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters["size"] = human_size
    env.globals.update(TYPE_NAMES=TYPE_NAMES)
    return env


def pages(catalog: PublishedCatalog) -> dict[str, str]:
    """File name -> HTML text, for the index and every image."""
    env = _environment()
    context = {"catalog": catalog, "commands": commands, "hubs": hubs}
    files = {"index.html": env.get_template("index.html.j2").render(**context)}
    for image in catalog.images:
        files[f"{image.name}.html"] = env.get_template("image.html.j2").render(
            image=image, **context)
        if image.sif is not None:
            files[tunnel_file(image)] = tunnel_script(catalog, image)
    files["style.css"] = (TEMPLATES / "style.css").read_text()
    return files


def write_site(catalog: PublishedCatalog, folder: Path) -> list[Path]:
    """Replace FOLDER with the site, whole: a failure leaves the old one."""
    files = pages(catalog)
    folder.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".site-", dir=folder.parent))
    try:
        stage.chmod(0o755)  # served by a web server as any other user
        for name, text in files.items():
            (stage / name).write_text(text)
        old = folder.parent / f".{folder.name}.old"
        shutil.rmtree(old, ignore_errors=True)
        if folder.exists():
            folder.rename(old)
        stage.rename(folder)
        shutil.rmtree(old, ignore_errors=True)
    except OSError as exc:
        shutil.rmtree(stage, ignore_errors=True)
        raise BuildFailed(f"{folder}: cannot write the site: {exc.strerror or exc}") from None
    return [folder / name for name in files]


def site(catalog_file: Path, published: Path | None, output: Path | None) -> Said:
    """`imagekit site`: the site of the published catalog (default: dist/catalog.json beside
    the catalog file) written to `output` (default: dist/site)."""
    dist = dist_of(catalog_file)
    folder = output if output is not None else dist / "site"
    written = write_site(read(published or dist / "catalog.json"), folder)
    size = sum(p.stat().st_size for p in written)
    return Said([f"wrote {folder}: {len(written)} files, {size / 1000:.0f} kB"])
