"""The `imagekit` command: arguments in, one call into a step, what it returns printed.

Exit status: 0 success, 1 a build/test/engine step failed, 2 bad input (nothing was done).
Every step is imported where its command runs, so `imagekit --help` starts quickly.
"""

from __future__ import annotations

import datetime as dt
import json
import signal
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.tree import Tree

from imagekit import __version__
from imagekit.errors import ImagekitError, one_line
from imagekit.resolve import load_catalog

app = typer.Typer(
    help="Build, test and publish notebook images for JupyterHub, Kubeflow, Armada and Slurm.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
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
Name = Annotated[str, Arg(help="image name")]
EngineOpt = Annotated[str | None, Opt(
    "--engine", envvar="IMAGEKIT_ENGINE", help="docker, podman or auto (Docker when it "
    "answers, else Podman); default: the catalog's engine")]
PlatformOpt = Annotated[list[str] | None, Opt(
    "--platform", help="linux/amd64 or linux/arm64, repeatable; default: the catalog's "
    "platforms")]
Published = Annotated[Path | None, Opt(
    "--published", help="the published catalog; default: dist/catalog.json")]
RuntimeOpt = Annotated[str, Opt("--runtime", help="apptainer or singularity")]
SifOpt = Annotated[str | None, Opt(
    "--sif", help="SIF path on the cluster; default: dist/<image>_<tag>.sif")]
SshOpt = Annotated[str | None, Opt(
    "--ssh", help="batchspawner: run sbatch/squeue/scancel on a login node over SSH, as "
    "USER@HOST[:PORT] (the hub needs no Slurm client)")]
SshConfigOpt = Annotated[Path | None, Opt(
    "--ssh-config", help="with --ssh: an ssh_config file (key, known hosts) for ssh -F")]


@contextmanager
def _user_errors() -> Iterator[None]:
    """Bad input: its problems and exit 2; what the machine, an engine or a registry caused:
    one line and exit 1. Never a traceback."""
    from imagekit.engine.errors import SERVICE_ERRORS

    try:
        yield
    except ImagekitError as exc:
        for problem in exc.problems:
            err.print(f"[bold red]error:[/] {escape(str(problem))}", markup=True)
        raise typer.Exit(exc.exit_code) from None
    except SERVICE_ERRORS as exc:  # before OSError: requests' errors are OSErrors too
        _fail(f"the engine or a registry failed: {one_line(exc)}")
    except OSError as exc:
        _fail(f"{f'{exc.filename}: ' if exc.filename else ''}{exc.strerror or exc}")


def _fail(text: str) -> None:
    err.print(f"[bold red]error:[/] {escape(text)}", markup=True)
    raise typer.Exit(1)


def _say(console: Console) -> Callable[[str], None]:
    return lambda text: console.print(text, markup=False)


def _table(columns: Iterable[str], rows: Iterable[Iterable[str]], no_wrap: bool = False,
           **kw: Any) -> Table:
    table = Table(header_style="bold", **kw)
    for column in columns:
        table.add_column(column, no_wrap=no_wrap)
    for row in rows:
        table.add_row(*row)
    return table


def _stale(items: Iterable[object], closing: str | None = None) -> None:
    """Each stale item, then the closing line, and exit 1; nothing when all is current."""
    found = [str(i) for i in items]
    for item in found:
        err.print(f"stale: {item}", markup=False)
    if found:
        if closing:
            err.print(closing)
        raise typer.Exit(1)


@app.command()
def validate(catalog: CatalogOpt = DEFAULT) -> None:
    """Check catalog.yaml, stacks/ and profiles/; print every problem found."""
    with _user_errors():
        cat = load_catalog(catalog)
    listed = sum(1 for i in cat.images.values() if i.listed)
    out.print(f"ok: {len(cat.stacks)} stacks, {len(cat.profiles)} profiles, "
              f"{listed} images ({len(cat.images)} with the parents they need)")


@app.command()
def render(images: Annotated[list[str] | None, Arg(help="images to render")] = None,
           all_: Annotated[bool, Opt("--all", help="every image in the catalog")] = False,
           check: Annotated[bool, Opt("--check", help="fail if recipes/ is stale")] = False,
           catalog: CatalogOpt = DEFAULT) -> None:
    """Write recipes/<image>/Dockerfile and Singularity.def (deterministic)."""
    from imagekit import recipes

    with _user_errors():
        cat = load_catalog(catalog)
        if check:
            _stale(recipes.check(cat), "recipes/ is out of date: run `imagekit render --all` "
                                       "and commit it")
            out.print(f"ok: recipes/ matches the catalog ({len(cat.images)} images)")
            return
        selected = cat.select(images or [], all_)
        written = recipes.write(cat, selected)
        for image in selected:
            out.print(f"rendered recipes/{image.name}/")
        out.print(f"{len(written)} files in {len(selected)} recipe folders")


@app.command()
def lock(
    names: Annotated[list[str] | None, Arg(help="stacks or images to lock")] = None,
    all_: Annotated[bool, Opt("--all", help="every stack with pip packages")] = False,
    check: Annotated[bool, Opt("--check", help="fail if a lock is missing or stale (offline)")
                     ] = False,
    upgrade: Annotated[bool, Opt("--upgrade", help="newest versions the stacks allow "
                                 "(default: keep current pins)")] = False,
    catalog: CatalogOpt = DEFAULT,
) -> None:
    """Resolve each stack's pip packages with uv into stacks/<name>.lock (with hashes).

    Pins already in a lock are kept where the stack still allows them (--upgrade moves them)."""
    from imagekit import lock as locks

    with _user_errors():
        cat = load_catalog(catalog)
        if check:
            bad = [s.problem() for s in locks.check(cat) if s.state != "current"]
            for problem in bad:
                err.print(f"[bold red]error:[/] {escape(str(problem))}", markup=True)
            if bad:
                raise typer.Exit(1)
            out.print(f"ok: {len(locks.lockable(cat))} locks match their stacks")
            return
        for line in locks.lock_named(cat, names or [], all_, upgrade=upgrade):
            out.print(line)


@app.command("list")
def list_(as_json: Annotated[bool, Opt("--json", help="machine-readable")] = False,
          catalog: CatalogOpt = DEFAULT) -> None:
    """The image tree, with type, GPU and formats."""
    with _user_errors():
        cat = load_catalog(catalog)
    if as_json:
        out.print_json(json.dumps(cat.listing()))
        return

    def add(node: Tree, names: Iterable[str]) -> Tree:
        for name in names:
            add(node.add(f"[bold]{name}[/]  [dim]{'  '.join(cat.flags(name))}[/]"),
                cat.children[name])
        return node

    roots = [i.name for i in cat.images.values() if i.parent is None]
    out.print(add(Tree(f"[bold]{cat.base.image}[/] (base image)"), roots))


@app.command()
def show(image: Name, catalog: CatalogOpt = DEFAULT) -> None:
    """An image's resolved settings, everything it inherits included."""
    with _user_errors():
        cat = load_catalog(catalog)
        rows = cat.describe(cat.select([image])[0].name)
    table = _table(("", ""), rows, show_header=False, box=None)
    table.columns[0].style = "bold"
    out.print(table)


@app.command()
def schema(check: Annotated[bool, Opt("--check", help="fail if schemas/ is stale")] = False,
           catalog: CatalogOpt = DEFAULT) -> None:
    """Write JSON Schemas for catalog.yaml, stacks/*.yaml and profiles/*.yaml to schemas/."""
    from imagekit import schemas

    folder = catalog.resolve().parent / "schemas"
    if check:
        _stale(f"schemas/{name}" for name in schemas.stale(folder))
        out.print("ok: schemas/ is up to date")
        return
    for path in schemas.write(folder):
        out.print(f"wrote {path}")


@app.command()
def base(refresh: Annotated[bool, Opt(
             "--refresh", help="pull or bootstrap it again even when present (Debian's "
             "updates); the images built on it then rebuild")] = False,
         platform: PlatformOpt = None, engine: EngineOpt = None,
         catalog: CatalogOpt = DEFAULT) -> None:
    """Make the catalog's base image exist, one per platform: present, pulled, or
    bootstrapped (another architecture's under emulation)."""
    from imagekit.engine.base import ensure_bases
    from imagekit.engine.choice import connect

    with _user_errors():
        cat = load_catalog(catalog)
        platforms = cat.choose_platforms(platform)
        found = ensure_bases(cat, connect(cat, engine), platforms, _say(out), refresh)
    for p, how in found:
        out.print(f"{cat.base_ref(p)}: {how}")


@app.command()
def doctor(catalog: CatalogOpt = DEFAULT) -> None:
    """Check the engine, BuildKit and the tools builds and SIFs need."""
    from imagekit.doctor import diagnose

    findings = diagnose(catalog)
    out.print(_table(("check", "state", "detail / how to fix"), (
        (f.name, "[green]ok[/]" if f.ok else "[red]missing[/]", f.detail) for f in findings)))
    if not all(f.ok or f.optional for f in findings):
        raise typer.Exit(1)


@app.command()
def build(
    images: Annotated[list[str] | None, Arg(help="images to build")] = None,
    all_: Annotated[bool, Opt("--all", help="every image in the catalog")] = False,
    dry_run: Annotated[bool, Opt("--dry-run", help="print the plan only")] = False,
    builder: Annotated[str, Opt("--builder", help="auto, buildkit or classic (the docker "
                                "SDK's) with Docker; auto or podman with Podman")] = "auto",
    force: Annotated[bool, Opt("--force", help="rebuild even when cached")] = False,
    plain: Annotated[bool, Opt("--plain", help="log lines, no live display")] = False,
    as_json: Json = False,
    formats: Annotated[list[str] | None, Opt("--format", help="docker or sif (repeatable); "
                                             "default: the image's catalog formats")] = None,
    sif_level: Annotated[int, Opt("--sif-level", min=1, max=9,
                                  help="gzip level of the SIF's squashfs")] = 5,
    sif_method: Annotated[str, Opt(
        "--sif-method", help="auto (apptainer when on PATH), native or apptainer")] = "auto",
    from_registry: Annotated[bool, Opt(
        "--from-registry", help="a CI runner: build only the named images; each one's parent "
        "is taken from the engine or pulled by the digest of its tree tag, never built, and a "
        "named image the registry already holds for this checkout is pulled (see `imagekit "
        "plan`)")] = False,
    platform: PlatformOpt = None, engine_choice: EngineOpt = None,
    catalog: CatalogOpt = DEFAULT,
) -> None:
    """Build images (parents first, each once, unchanged ones from cache) for each of their
    platforms; SIFs into dist/."""
    from imagekit import build as builds
    from imagekit.progress import build_display, summary
    from imagekit.publish.shared import build_from_registry

    job = builds.BuildJob(images or [], all_, formats, builder, force, sif_level, sif_method,
                          from_registry, platform, engine_choice)
    log = err if as_json else out
    with _user_errors():
        ready = builds.prepare(load_catalog(catalog), job)
        if dry_run:
            planned = builds.dry_run_all(ready)
            for line in [] if as_json else builds.dry_run_lines(ready, planned):
                out.print(line)
            if as_json:
                out.print_json(json.dumps([o.as_dict() for o in planned]))
            return
        log.print(f"builder: {ready.builder.description}", markup=False)
        live = log.is_terminal and not plain and not as_json and not from_registry
        door = build_from_registry if from_registry else builds.build_images
        report = door(ready, _say(log), build_display(log, live))
    if as_json:
        out.print_json(json.dumps(report.as_dict()))
    else:
        out.print(summary(report.outcomes))
    if report.failed:
        raise typer.Exit(1)


@app.command("test")
def test_(images: Annotated[list[str] | None, Arg(help="images to test")] = None,
          all_: Annotated[bool, Opt("--all", help="every buildable image")] = False,
          as_json: Annotated[bool, Opt("--json", help="print the results as JSON")] = False,
          platform: PlatformOpt = None, engine_choice: EngineOpt = None,
          catalog: CatalogOpt = DEFAULT) -> None:
    """Smoke-test built images, on each of their platforms: their checks, then their
    consumers' runtime contract (another architecture's under emulation)."""
    from imagekit.checks.runner import test_images
    from imagekit.engine.choice import connect
    from imagekit.progress import TestDisplay

    shown = TestDisplay(err if as_json else out)
    with _user_errors():
        cat = load_catalog(catalog)
        selected = cat.select(images or [], all_)
        platforms = cat.choose_platforms(platform)
        report = test_images(connect(cat, engine_choice), cat, selected, platforms,
                             shown.result, shown.note, only_built=all_)
    if as_json:
        out.print_json(json.dumps(report.as_dict()))
    else:
        out.print(report.summary())
    if report.failed or report.not_tested:
        raise typer.Exit(1)


@app.command()
def publish(
    images: Annotated[list[str] | None, Arg(help="images to publish")] = None,
    all_: Annotated[bool, Opt("--all", help="every listed image built here")] = False,
    skip_tests: Annotated[bool, Opt(
        "--skip-tests", help="publish images that did not pass `imagekit test` (no moving "
        "tag is pushed for them)")] = False,
    as_json: Json = False,
    from_registry: Annotated[bool, Opt(
        "--from-registry", help="CI's last job: publish what CI runners pushed for this "
        "checkout (`imagekit push`), moving tags in the registry; nothing is built or pushed "
        "again")] = False,
    pins: Annotated[list[str] | None, Opt(
        "--pin", help="IMAGE=DIGEST (repeatable): roll IMAGE back to a digest an earlier "
        "catalog published; its tags and every export follow")] = None,
    engine_choice: EngineOpt = None, catalog: CatalogOpt = DEFAULT,
) -> None:
    """Push tested images and SIFs by digest, then write dist/catalog.json and the exports."""
    from imagekit.publish import run

    job = run.PublishJob(images or [], all_, skip_tests, from_registry, pins or [],
                         engine_choice)
    with _user_errors():
        cat = load_catalog(catalog)
        if skip_tests:
            cat.select(images or [], all_ or bool(pins))  # an unknown name is said first
            err.print("[bold yellow]WARNING: --skip-tests: images that did not pass `imagekit "
                      "test` are published, under an untested-<id> tag only, and marked "
                      "untested in the catalog[/]")
        report = run.publish(cat, job, _say(err if as_json else out))
    if as_json:
        out.print_json(json.dumps(report.as_dict()))
        return
    out.print(_table(run.COLUMNS, run.rows(report)))
    for line in run.closing(report):
        out.print(line, markup=False)


@app.command()
def plan(as_json: Annotated[bool, Opt("--json", help="the whole plan, machine-readable")
                            ] = False,
         changed: Annotated[list[str] | None, Opt(
             "--changed", help="a file of the checkout that changed (repeatable): print only "
             "the images it rebuilds, one per line")] = None,
         catalog: CatalogOpt = DEFAULT) -> None:
    """The build graph for CI: images, parents, waves, tree keys, what each file rebuilds."""
    from imagekit.ci.plan import make_plan

    with _user_errors():
        the_plan = make_plan(load_catalog(catalog))
    if changed is not None:
        for name in the_plan.affected(changed):
            out.print(name, markup=False)
    elif as_json:
        sys.stdout.write(the_plan.to_json())
    else:
        out.print(_table(the_plan.COLUMNS, the_plan.rows(), no_wrap=True))
        out.print(the_plan.closing(), markup=False)


@app.command()
def site(published: Published = None,
         output: Annotated[Path | None, Opt("--output", help="the site's folder; default: "
                                            "dist/site")] = None,
         catalog: CatalogOpt = DEFAULT) -> None:
    """Write the static HTML catalog (an index and a page per image) from the published
    catalog: what is in each image, how it was tested, and how to run it."""
    from imagekit.published.catalog import read
    from imagekit.site.build import write_site

    with _user_errors():
        dist = catalog.resolve().parent / "dist"
        folder = output if output is not None else dist / "site"
        written = write_site(read(published or dist / "catalog.json"), folder)
    size = sum(p.stat().st_size for p in written)
    out.print(f"wrote {folder}: {len(written)} files, {size / 1000:.0f} kB", markup=False)


@ci_app.command("github")
def ci_github(check: Annotated[bool, Opt("--check", help="fail if the workflow file is "
                                         "missing or stale")] = False,
              output: Annotated[Path | None, Opt("--output", help="default: .github/workflows/"
                                                 "imagekit.yml next to the catalog")] = None,
              catalog: CatalogOpt = DEFAULT) -> None:
    """Write the GitHub Actions workflow: one job per image, `needs:` its parent's job."""
    from imagekit.ci import github

    with _user_errors():
        path, current = github.sync(load_catalog(catalog), output, check)
        if not current:
            _fail(f"{path} is {'stale' if path.is_file() else 'missing'}: run `imagekit ci "
                  "github` and commit it")
    out.print(f"ok: {path} matches the stack tree" if check else f"wrote {path}", markup=False)


@app.command()
def prune(keep: Annotated[int, Opt("--keep", min=1, help="the last N published catalogs keep "
                                   "what they name")] = 5,
          dry_run: Annotated[bool, Opt("--dry-run", help="say what would go")] = False,
          grace_hours: Annotated[int, Opt("--grace-hours", min=0, help="keep what was made "
                                          "this recently, named or not (a CI run's push "
                                          "before its publish)")] = 24,
          as_json: Json = False, catalog: CatalogOpt = DEFAULT) -> None:
    """Delete from the registry what imagekit pushed that none of the last N published
    catalogs names (never a digest a kept catalog names, nor one a followed tag points at),
    and the catalogs older than those N. The registry frees the blobs at its next garbage
    collection."""
    from imagekit.publish.retention import prune as run_prune

    with _user_errors():
        report = run_prune(load_catalog(catalog), keep, _say(err if as_json else out),
                           dry_run=dry_run, grace=dt.timedelta(hours=grace_hours))
    if as_json:
        out.print_json(json.dumps(report.as_dict()))
    else:
        out.print(report.summary(dry_run), markup=False)


@app.command()
def verify(ref: Annotated[str, Arg(help="an image of the published catalog: its name, or "
                                        "REPOSITORY@DIGEST")],
           key: Annotated[Path | None, Opt("--key", help="the site's cosign public key, to "
                                           "check the image's signature")] = None,
           as_json: Annotated[bool, Opt("--json", help="print the findings as JSON")] = False,
           catalog: CatalogOpt = DEFAULT) -> None:
    """Check a published image against the catalog the registry holds: digest and tags,
    cosign signature, SBOM, test record and SIF."""
    from imagekit.publish.verify import as_dicts
    from imagekit.publish.verify import verify as run_verify

    with _user_errors():
        image, findings = run_verify(load_catalog(catalog), ref, key)
    if as_json:
        out.print_json(json.dumps({"image": image.name, "reference": image.reference,
                                   "findings": as_dicts(findings)}))
    else:
        out.print(f"{image.name}: {image.reference}", markup=False)
        for f in findings:
            out.print(f"{'[green]PASS[/]' if f.ok else '[red]FAIL[/]'} {f.check}: "
                      f"{escape(f.evidence)}")
    if not all(f.ok for f in findings):
        raise typer.Exit(1)


@app.command()
def push(images: Annotated[list[str], Arg(help="images to push")], as_json: Json = False,
         engine_choice: EngineOpt = None, catalog: CatalogOpt = DEFAULT) -> None:
    """A CI runner's share: a tested image and its SIF to the registry under its tree tag,
    with the record `publish --from-registry` reads. Moves no tag users follow."""
    from imagekit.engine.choice import connect
    from imagekit.publish.shared import push as run_push

    with _user_errors():
        cat = load_catalog(catalog)
        names = [i.name for i in cat.select(images)]
        lines = run_push(cat, connect(cat, engine_choice), names, _say(err if as_json else out))
    if as_json:
        out.print_json(json.dumps({"images": [asdict(line) for line in lines]}))
    for line in [] if as_json else lines:
        out.print(f"{line.image}: {line.reference}", markup=False)


@app.command("export")
def export_(
    target: Annotated[str, Arg(help="kubespawner, dockerspawner, kubeflow, workspacekind, "
                               "setting, batchspawner, armada, kube")],
    image: Annotated[str | None, Arg(help="kube: the image whose Pod and "
                                          "PersistentVolumeClaim to write")] = None,
    output: Annotated[Path | None, Opt("--output", "-o", help="write here instead of stdout")
                      ] = None,
    file: Annotated[str | None, Opt("--file", help="one of the target's files (e.g. "
                                    "kubespawner.py); default: its first")] = None,
    published: Published = None, ssh: SshOpt = None, ssh_config: SshConfigOpt = None,
    catalog: CatalogOpt = DEFAULT,
) -> None:
    """Write one consumer's configuration, derived from the published catalog only."""
    from imagekit.exports.choice import exporter, pick
    from imagekit.files import writable, write_atomically
    from imagekit.published.catalog import read

    with _user_errors():
        export = exporter(target, image, ssh, ssh_config)
        source = published or catalog.resolve().parent / "dist" / "catalog.json"
        chosen = pick(export(read(source)), target, image, file, source)
        if output is not None:
            write_atomically(writable(output), chosen.text)
    if output is None:
        out.print(chosen.text, markup=False, highlight=False, end="")
    else:
        out.print(f"wrote {output}")


@app.command()
def inspect(path: Annotated[Path, Arg(help="a .sif file")],
            as_json: Annotated[bool, Opt("--json", help="machine-readable")] = False) -> None:
    """A SIF's header, objects, labels and definition file."""
    from imagekit import sif

    with _user_errors():
        info = sif.inspect_file(path)
    if as_json:
        out.print_json(json.dumps(info))
        return
    out.print(f"launch script: {info['launch']}\n{info['header']}", markup=False)
    out.print(_table(sif.OBJECT_COLUMNS, sif.object_rows(info), title="objects"))
    out.print("[bold]labels[/]")
    for key, value in sorted(info["labels"].items()):
        out.print(f"  {key} = {value}", markup=False)
    out.print("[bold]definition file[/]")
    out.print(info["deffile"], markup=False)


@app.command("run-cmd")
def run_cmd(image: Name,
            command: Annotated[list[str] | None, Arg(help="command; default: a shell")] = None,
            runtime: RuntimeOpt = "singularity", sif: SifOpt = None,
            catalog: CatalogOpt = DEFAULT) -> None:
    """Print the exact `singularity exec` line for an image, with its profile's binds."""
    from imagekit import hpc

    with _user_errors():
        cat = load_catalog(catalog)
        lines = hpc.run_cmd(cat, cat.select([image])[0], command or ["bash"], runtime, sif)
    for line in lines:
        out.print(line, markup=False, highlight=False)


@app.command()
def tunnel(
    image: Name,
    partition: Annotated[str | None, Opt(help="Slurm partition")] = None,
    time: Annotated[str, Opt(help="wall time")] = "04:00:00",
    mem: Annotated[str | None, Opt(help="memory, e.g. 8G")] = None,
    cpus: Annotated[int | None, Opt(help="CPUs per task", min=1)] = None,
    gpus: Annotated[int | None, Opt(help="GPUs (gres gpu:N)", min=1)] = None,
    output: Annotated[Path | None, Opt("--output", "-o", help="write the script here")] = None,
    submit: Annotated[bool, Opt(help="submit it with sbatch")] = False,
    runtime: RuntimeOpt = "apptainer", sif: SifOpt = None, catalog: CatalogOpt = DEFAULT,
) -> None:
    """Write an sbatch script that serves the image on a node behind an SSH tunnel."""
    from imagekit import hpc
    from imagekit.files import writable

    with _user_errors():
        cat = load_catalog(catalog)
        img = cat.select([image])[0]
        if gpus and not img.runtime.gpu:
            err.print(f"warning: {image} is not a GPU image; --gpus adds --gres only")
        script = hpc.tunnel_script(cat, img, hpc.JobOptions(partition, time, mem, cpus, gpus),
                                   runtime, sif)
        target = output or (Path(f"imagekit-{img.name}.sbatch") if submit else None)
        if target is None:
            out.print(script, markup=False, highlight=False, end="")
            return
        hpc.write_script(writable(target), script)
        out.print(f"wrote {target}")
        if submit:
            out.print(hpc.submit(target))


@spawner_app.command("batchspawner")
def spawner_batchspawner(
    image: Name, partition: Annotated[str | None, Opt(help="default Slurm partition")] = None,
    runtime: RuntimeOpt = "apptainer", sif: SifOpt = None, ssh: SshOpt = None,
    ssh_config: SshConfigOpt = None, catalog: CatalogOpt = DEFAULT,
) -> None:
    """Print jupyterhub_config.py lines: SlurmSpawner running the image's SIF."""
    from imagekit import hpc

    with _user_errors():
        login = hpc.SshLogin.from_options(ssh, ssh_config)
        cat = load_catalog(catalog)
        text = hpc.batchspawner_config(cat, cat.select([image])[0], runtime, sif, partition,
                                       login)
    out.print(text, markup=False, highlight=False, end="")


@app.command()
def version() -> None:
    """Print imagekit's version."""
    out.print(__version__)


class Interrupted(BaseException):
    """Ctrl-C or SIGTERM: unwinds every step (its `finally` clean-ups run) up to main().
    Not KeyboardInterrupt, which typer turns into an exit of its own first."""


def _interrupted(signum: int, frame: object) -> None:
    raise Interrupted(signum)


def main() -> None:
    from imagekit.engine import temporary

    signal.signal(signal.SIGINT, _interrupted)
    signal.signal(signal.SIGTERM, _interrupted)  # a CI runner stopping the job
    try:
        app()
    except (Interrupted, KeyboardInterrupt):
        removed = temporary.clean_up()
        err.print("interrupted" + (f"; removed {removed} temporary containers and volumes"
                                   if removed else ""))
        sys.exit(130)
