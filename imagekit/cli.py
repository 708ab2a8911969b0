"""The `imagekit` command: arguments in, one call into a step, what it says printed; exit 1
when a step failed, 2 on bad input. Each step is imported when its command runs (quick --help)."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console, RenderableType
from rich.markup import escape
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from imagekit import __version__
from imagekit.resolve import load_catalog
from imagekit.said import Markup, Node, Rows, Said


class _Group(typer.core.TyperGroup):
    """What fails in any command is said (engine.errors.as_failure), never as a traceback."""

    def invoke(self, ctx: Any) -> Any:
        from imagekit.engine.errors import as_failure
        try:
            return super().invoke(ctx)
        except Exception as exc:  # typer's own (--help, exit statuses) are no failure: raised
            failure = as_failure(exc)
            if failure is None:
                raise
            for problem in failure.problems:
                err.print(f"[bold red]error:[/] {escape(str(problem))}")
            raise typer.Exit(failure.exit_code) from None


app = typer.Typer(
    help="Build, test and publish notebook images for JupyterHub, Kubeflow, Armada and Slurm.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False, cls=_Group)
ci_app = typer.Typer(help="CI workflows derived from the stack tree.", no_args_is_help=True)
spawner_app = typer.Typer(help="Spawner configuration for an image.", no_args_is_help=True)
app.add_typer(ci_app, name="ci")
app.add_typer(spawner_app, name="spawner")
# No emoji: `a:b:` in a printed config or command line stays `a:b:` (not `a🅱`).
out = Console(highlight=False, soft_wrap=True, emoji=False)
err = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)
Opt = typer.Option
Arg = typer.Argument
DEFAULT = Path("catalog.yaml")
CatalogOpt = Annotated[Path, Opt("--catalog", "-c", envvar="IMAGEKIT_CATALOG",
                                 help="catalog file; default: catalog.yaml here")]
Json = Annotated[bool, Opt("--json", help="print the outcome as JSON")]
MachineJson = Annotated[bool, Opt("--json", help="machine-readable")]
Name = Annotated[str, Arg(help="image name")]
AllImages = Annotated[bool, Opt("--all", help="every image in the catalog")]
EngineOpt = Annotated[str | None, Opt("--engine", envvar="IMAGEKIT_ENGINE", help=(
    "docker, podman or auto (Docker when it answers, else Podman); default: the catalog's engine"))]
PlatformOpt = Annotated[list[str] | None, Opt(help="linux/amd64 or linux/arm64, repeatable; "
                                              "default: the catalog's platforms")]
Published = Annotated[Path | None, Opt(help="the published catalog; default: dist/catalog.json")]
RuntimeOpt = Annotated[str, Opt(help="apptainer or singularity")]
SifOpt = Annotated[str | None, Opt(help="SIF path on the cluster; default: dist/<image>_<tag>.sif")]
SshOpt = Annotated[str | None, Opt(help="batchspawner: run sbatch/squeue/scancel on a login "
                                   "node over SSH, as USER@HOST[:PORT] (the hub needs no "
                                   "Slurm client)")]
SshConfigOpt = Annotated[Path | None, Opt(help="with --ssh: an ssh_config file (key, known "
                                          "hosts) for ssh -F")]


def _log(as_json: bool) -> Callable[[str], None]:
    """Where a step says how it goes: stderr when stdout carries its JSON."""
    return functools.partial(err.print if as_json else out.print, markup=False)


def _tree(node: Node) -> Tree:
    tree = Tree(node.label)
    tree.children = [_tree(child) for child in node.children]
    return tree


def _table(rows: Rows) -> Table:
    table = Table(title=rows.title, header_style="bold", show_header=rows.header,
                  box=box.HEAVY_HEAD if rows.header else None)
    for n, column in enumerate(rows.columns):
        table.add_column(column, no_wrap=rows.no_wrap, style=None if n or rows.header else "bold")
    for row in rows.rows:
        table.add_row(*(cell if isinstance(cell, Markup) else Text(cell) for cell in row))
    return table


def _show(said: Said, as_json: bool = False) -> None:
    """Print what a step said (with --json, its JSON instead); exit with its status."""
    for line in said.err:
        err.print(line, markup=isinstance(line, Markup))
    if as_json:
        out.print_json(data=said.data)
    for item in [] if as_json else said.out:
        shown: RenderableType = (_tree(item) if isinstance(item, Node) else
                                 _table(item) if isinstance(item, Rows) else item)
        out.print(shown, markup=not isinstance(item, str) or isinstance(item, Markup))
    if said.text:
        out.print(said.text, markup=False, end="")
    if said.code:
        raise typer.Exit(said.code)


@app.command()
def validate(catalog: CatalogOpt = DEFAULT) -> None:
    """Check catalog.yaml, stacks/ and profiles/; print every problem found."""
    out.print(load_catalog(catalog).summary(), markup=False)


@app.command()
def render(images: Annotated[list[str] | None, Arg(help="images to render")] = None,
           all_: AllImages = False,
           check: Annotated[bool, Opt("--check", help="fail if recipes/ is stale")] = False,
           catalog: CatalogOpt = DEFAULT) -> None:
    """Write recipes/<image>/Dockerfile and Singularity.def (deterministic)."""
    from imagekit.recipes import render_or_check
    _show(render_or_check(load_catalog(catalog), images or [], all_, check))


@app.command()
def lock(names: Annotated[list[str] | None, Arg(help="stacks or images to lock")] = None,
         all_: Annotated[bool, Opt("--all", help="every stack with pip packages")] = False,
         check: Annotated[bool, Opt("--check", help="fail if a lock is missing or stale "
                                    "(offline)")] = False,
         upgrade: Annotated[bool, Opt("--upgrade", help="newest versions the stacks allow "
                                      "(default: keep current pins)")] = False,
         settle: Annotated[bool, Opt("--settle", help="fold the packages added since a "
                                     "lock was settled into its settled part")] = False,
         catalog: CatalogOpt = DEFAULT) -> None:
    """Resolve each stack's pip packages with uv into stacks/<name>.lock (with hashes).

    Pins already in a lock are kept where the stack still allows them (--upgrade moves them);
    --all leaves a lock that matches its stack alone. Packages a relock adds are kept apart
    from the settled ones, and images install them in a layer of their own (--settle folds
    them in)."""
    from imagekit.lock import lock_or_check
    _show(lock_or_check(load_catalog(catalog), names or [], all_, check_only=check,
                        upgrade=upgrade, say=_log(False), settle=settle))


@app.command("list")
def list_(as_json: MachineJson = False, catalog: CatalogOpt = DEFAULT) -> None:
    """The image tree, with type, GPU and formats."""
    _show(load_catalog(catalog).tree(), as_json)


@app.command()
def show(image: Name, catalog: CatalogOpt = DEFAULT) -> None:
    """An image's resolved settings, everything it inherits included."""
    _show(Said([load_catalog(catalog).describe(image)]))


@app.command()
def schema(check: Annotated[bool, Opt("--check", help="fail if schemas/ is stale")] = False,
           catalog: CatalogOpt = DEFAULT) -> None:
    """Write JSON Schemas for catalog.yaml, stacks/*.yaml and profiles/*.yaml to schemas/."""
    from imagekit.schemas import write_or_check
    _show(write_or_check(catalog, check))


@app.command()
def base(refresh: Annotated[bool, Opt("--refresh", help="pull or bootstrap it again even when "
                                      "present (Debian's updates); the images built on it "
                                      "then rebuild")] = False,
         platform: PlatformOpt = None, engine: EngineOpt = None, catalog: CatalogOpt = DEFAULT
         ) -> None:
    """Make the catalog's base image exist, one per platform: present, pulled, or
    bootstrapped (another architecture's under emulation)."""
    from imagekit.engine.base import ensure_bases
    _show(ensure_bases(load_catalog(catalog), engine, platform, _log(False), refresh))


@app.command()
def doctor(as_json: MachineJson = False, catalog: CatalogOpt = DEFAULT) -> None:
    """Check the engines (version, builder, image store), BuildKit and the tools builds and
    SIFs need."""
    from imagekit.doctor import report
    _show(report(catalog), as_json)


@app.command()
def build(
    images: Annotated[list[str] | None, Arg(help="images to build")] = None,
    all_: AllImages = False,
    dry_run: Annotated[bool, Opt("--dry-run", help="print the plan only")] = False,
    builder: Annotated[str, Opt(help="auto, buildkit or classic (the docker SDK's) with "
                                "Docker; auto or podman with Podman")] = "auto",
    force: Annotated[bool, Opt("--force", help="rebuild even when cached")] = False,
    plain: Annotated[bool, Opt("--plain", help="log lines, no live display")] = False,
    as_json: Json = False,
    formats: Annotated[list[str] | None, Opt("--format", help="docker or sif (repeatable); "
                                             "default: the image's catalog formats")] = None,
    sif_level: Annotated[int | None, Opt(
        min=1, max=22, help="the SIF squashfs's compression level (gzip 1-9, zstd 1-22); "
        "default: the catalog's sif.level, else gzip 5 or zstd 3")] = None,
    sif_method: Annotated[str, Opt(help="auto (apptainer when on PATH), native or apptainer")
                          ] = "auto",
    from_registry: Annotated[bool, Opt(
        "--from-registry", help="a CI runner: build only the named images; each one's parent "
        "is taken from the engine or pulled by the digest of its tree tag, never built, and a "
        "named image the registry already holds for this checkout is pulled (see `imagekit "
        "plan`)")] = False,
    platform: PlatformOpt = None, engine_choice: EngineOpt = None, catalog: CatalogOpt = DEFAULT,
) -> None:
    """Build images (parents first, each once, unchanged ones from cache) for each of their
    platforms; SIFs into dist/."""
    from imagekit import build as builds
    from imagekit.progress import build_display
    job = builds.BuildJob(images or [], all_, formats, builder, force, sif_level, sif_method,
                          from_registry, platform, engine_choice)
    ready = builds.prepare(load_catalog(catalog), job)
    if dry_run:
        return _show(builds.dry_run_all(ready), as_json)
    display = build_display(err if as_json else out, plain or as_json or from_registry)
    if from_registry:  # the publishing side (oras, jsonschema) only when a runner needs it
        from imagekit.publish.shared import build_from_registry
        return _show(build_from_registry(ready, _log(as_json), display).said(), as_json)
    _show(builds.build_images(ready, _log(as_json), display).said(), as_json)


@app.command("test")
def test_(images: Annotated[list[str] | None, Arg(help="images to test")] = None,
          all_: Annotated[bool, Opt("--all", help="every buildable image")] = False,
          as_json: Annotated[bool, Opt("--json", help="print the results as JSON")] = False,
          force: Annotated[bool, Opt("--force", help="run the checks again even for an "
                                     "image ID that passed them before")] = False,
          platform: PlatformOpt = None, engine_choice: EngineOpt = None,
          catalog: CatalogOpt = DEFAULT) -> None:
    """Smoke-test built images, on each of their platforms: their checks, then their
    consumers' runtime contract (another architecture's under emulation). An image ID that
    passed the same checks before is not tested again."""
    from imagekit.checks.runner import test
    from imagekit.progress import TestDisplay
    _show(test(load_catalog(catalog), images or [], all_, platform, engine_choice,
               TestDisplay(err if as_json else out), force), as_json)


@app.command()
def publish(
    images: Annotated[list[str] | None, Arg(help="images to publish")] = None,
    all_: Annotated[bool, Opt("--all", help="every listed image built here")] = False,
    skip_tests: Annotated[bool, Opt("--skip-tests", help="publish images that did not pass "
                                    "`imagekit test` (no moving tag is pushed for them)")
                          ] = False,
    as_json: Json = False,
    from_registry: Annotated[bool, Opt(
        "--from-registry", help="CI's last job: publish what CI runners pushed for this "
        "checkout (`imagekit push`), moving tags in the registry; nothing is built or pushed "
        "again")] = False,
    pins: Annotated[list[str] | None, Opt(
        "--pin", help="IMAGE=DIGEST (repeatable): roll IMAGE back to a digest an earlier "
        "catalog published; its tags and every export follow")] = None,
    engine_choice: EngineOpt = None, catalog: CatalogOpt = DEFAULT) -> None:
    """Push tested images and SIFs by digest, then write dist/catalog.json and the exports."""
    from imagekit.publish import run
    job = run.PublishJob(images or [], all_, skip_tests, from_registry, pins or [], engine_choice)
    _show(run.publish(load_catalog(catalog), job, _log(as_json), err.print), as_json)


@app.command()
def plan(as_json: Annotated[bool, Opt("--json", help="the whole plan, machine-readable")
                            ] = False,
         changed: Annotated[list[str] | None, Opt(help="a file of the checkout that changed "
                                                  "(repeatable): print only the images it "
                                                  "rebuilds, one per line")] = None,
         catalog: CatalogOpt = DEFAULT) -> None:
    """The build graph for CI: images, parents, waves, tree keys, what each file rebuilds."""
    from imagekit.ci.plan import make_plan
    _show(make_plan(load_catalog(catalog)).said(changed, as_json))


@app.command()
def site(published: Published = None,
         output: Annotated[Path | None, Opt(help="the site's folder; default: dist/site")] = None,
         catalog: CatalogOpt = DEFAULT) -> None:
    """Write the static HTML catalog (an index and a page per image) from the published
    catalog: what is in each image, how it was tested, and how to run it."""
    from imagekit.site.build import site as write_site
    _show(write_site(catalog, published, output))


@ci_app.command("github")
def ci_github(check: Annotated[bool, Opt("--check", help="fail if the workflow file is "
                                         "missing or stale")] = False,
              output: Annotated[Path | None, Opt(help="default: .github/workflows/"
                                                 "imagekit.yml next to the catalog")] = None,
              catalog: CatalogOpt = DEFAULT) -> None:
    """Write the GitHub Actions workflow: one job per image, `needs:` its parent's job."""
    from imagekit.ci import github
    _show(github.sync(load_catalog(catalog), output, check))


@app.command()
def prune(keep: Annotated[int, Opt(min=1, help="the last N published catalogs keep what they "
                                   "name")] = 5,
          dry_run: Annotated[bool, Opt("--dry-run", help="say what would go")] = False,
          grace_hours: Annotated[int, Opt(min=0, help="keep what was made this recently, named or "
                                          "not (a CI run's push before its publish)")] = 24,
          as_json: Json = False, catalog: CatalogOpt = DEFAULT) -> None:
    """Delete from the registry what imagekit pushed that none of the last N published
    catalogs names (never a digest a kept catalog names, nor one a followed tag points at),
    and the catalogs older than those N. The registry frees the blobs at its next garbage
    collection."""
    from imagekit.publish.retention import prune as run_prune
    _show(run_prune(load_catalog(catalog), keep, _log(as_json), dry_run=dry_run,
                    grace=dt.timedelta(hours=grace_hours)), as_json)


@app.command()
def verify(ref: Annotated[str, Arg(help="an image of the published catalog: its name, or "
                                        "REPOSITORY@DIGEST")],
           key: Annotated[Path | None, Opt(help="the site's cosign public key, to check the "
                                           "image's signature")] = None,
           as_json: Annotated[bool, Opt("--json", help="print the findings as JSON")] = False,
           catalog: CatalogOpt = DEFAULT) -> None:
    """Check a published image against the catalog the registry holds: digest and tags,
    cosign signature, SBOM, test record and SIF."""
    from imagekit.publish.verify import report
    _show(report(load_catalog(catalog), ref, key), as_json)


@app.command()
def push(images: Annotated[list[str], Arg(help="images to push")], as_json: Json = False,
         engine_choice: EngineOpt = None, catalog: CatalogOpt = DEFAULT) -> None:
    """A CI runner's share: a tested image and its SIF to the registry under its tree tag,
    with the record `publish --from-registry` reads. Moves no tag users follow."""
    from imagekit.publish.shared import push_images
    _show(push_images(load_catalog(catalog), images, engine_choice, _log(as_json)), as_json)


@app.command("export")
def export_(
    target: Annotated[str, Arg(help="kubespawner, dockerspawner, kubeflow, workspacekind, "
                               "setting, batchspawner, armada, kube")],
    image: Annotated[str | None, Arg(help="kube: the image whose Pod and "
                                          "PersistentVolumeClaim to write")] = None,
    output: Annotated[Path | None, Opt("--output", "-o", help="write here instead of stdout")
                      ] = None,
    file: Annotated[str | None, Opt(help="one of the target's files (e.g. kubespawner.py); "
                                    "default: its first")] = None,
    published: Published = None, ssh: SshOpt = None, ssh_config: SshConfigOpt = None,
    catalog: CatalogOpt = DEFAULT) -> None:
    """Write one consumer's configuration, derived from the published catalog only."""
    from imagekit.exports.choice import export
    _show(export(target, image, file, published, catalog, ssh, ssh_config, output))


@app.command()
def inspect(path: Annotated[Path, Arg(help="a .sif file")], as_json: MachineJson = False) -> None:
    """A SIF's header, objects, labels and definition file."""
    from imagekit.sif import described
    _show(described(path), as_json)


@app.command("run-cmd")
def run_cmd(image: Name,
            command: Annotated[list[str] | None, Arg(help="command; default: a shell")] = None,
            runtime: RuntimeOpt = "singularity", sif: SifOpt = None,
            catalog: CatalogOpt = DEFAULT) -> None:
    """Print the exact `singularity exec` line for an image, with its profile's binds."""
    from imagekit import hpc
    _show(hpc.exec_lines(load_catalog(catalog), image, command or ["bash"], runtime, sif))


@app.command()
def tunnel(
    image: Name, partition: Annotated[str | None, Opt(help="Slurm partition")] = None,
    time: Annotated[str, Opt(help="wall time")] = "04:00:00",
    mem: Annotated[str | None, Opt(help="memory, e.g. 8G")] = None,
    cpus: Annotated[int | None, Opt(help="CPUs per task", min=1)] = None,
    gpus: Annotated[int | None, Opt(help="GPUs (gres gpu:N)", min=1)] = None,
    output: Annotated[Path | None, Opt("--output", "-o", help="write the script here")] = None,
    submit: Annotated[bool, Opt(help="submit it with sbatch")] = False,
    runtime: RuntimeOpt = "apptainer", sif: SifOpt = None, catalog: CatalogOpt = DEFAULT) -> None:
    """Write an sbatch script that serves the image on a node behind an SSH tunnel."""
    from imagekit import hpc
    options = hpc.JobOptions(partition, time, mem, cpus, gpus)
    _show(hpc.tunnel(load_catalog(catalog), image, options, runtime, sif, output, submit,
                     _log(False), err.print))


@spawner_app.command("batchspawner")
def spawner_batchspawner(
    image: Name, partition: Annotated[str | None, Opt(help="default Slurm partition")] = None,
    runtime: RuntimeOpt = "apptainer", sif: SifOpt = None, ssh: SshOpt = None,
    ssh_config: SshConfigOpt = None, catalog: CatalogOpt = DEFAULT) -> None:
    """Print jupyterhub_config.py lines: SlurmSpawner running the image's SIF."""
    from imagekit import hpc
    login = hpc.SshLogin.from_options(ssh, ssh_config)
    _show(hpc.spawner(load_catalog(catalog), image, runtime, sif, partition, login))


@app.command()
def version() -> None:
    """Print imagekit's version."""
    out.print(__version__)


def main() -> None:
    import sys
    # oras imports jsonschema, which builds rfc3987-syntax's 38 Lark grammars at import when
    # that optional package is installed (jupyter-events installs it beside a hub): 0.75 s
    # of CPU in every command that talks to a registry. No command checks an IRI's format.
    sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]
    from imagekit.engine.temporary import removed_when_interrupted
    with removed_when_interrupted(err.print):
        app()
