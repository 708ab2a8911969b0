"""The `imagekit` command: arguments in, one call into a step, exit codes out.

Exit status: 0 success, 1 a build/test/engine step failed, 2 bad input (nothing was done).
"""

from __future__ import annotations

import functools
import json
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.tree import Tree

from imagekit import __version__, recipes, schemas
from imagekit.checks import CheckResult
from imagekit.errors import BuildFailed, ImagekitError, Problem, did_you_mean
from imagekit.files import write_atomically
from imagekit.model import Catalog, Image, arch
from imagekit.resolve import load_catalog
from imagekit.schema import Platform

if TYPE_CHECKING:
    from imagekit import hpc

app = typer.Typer(
    help="Build, test and publish notebook images for JupyterHub, Kubeflow, Armada and Slurm.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

CatalogOpt = Annotated[
    Path,
    typer.Option("--catalog", "-c", help="catalog file; default: catalog.yaml here",
                 envvar="IMAGEKIT_CATALOG"),
]
F = TypeVar("F", bound=Callable[..., Any])


@contextmanager
def _user_errors() -> Iterator[None]:
    import docker.errors
    import requests

    try:
        yield
    except ImagekitError as exc:
        for problem in exc.problems:
            err.print(f"[bold red]error:[/] {problem}", markup=True, highlight=False)
        raise typer.Exit(exc.exit_code) from None
    # What the machine, not the input, can cause: one line, exit 1.
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        err.print(f"[bold red]error:[/] {where}{exc.strerror or exc}", markup=True,
                  highlight=False)
        raise typer.Exit(1) from None
    except (docker.errors.DockerException, requests.RequestException) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        err.print(f"[bold red]error:[/] the engine or a registry failed: {first}",
                  markup=True, highlight=False)
        raise typer.Exit(1) from None


def _writable(path: Path, option: str = "--output") -> Path:
    """An output path whose folder exists: bad input, said before any work is done."""
    folder = path.parent
    if not folder.is_dir():
        raise ImagekitError(Problem(None, option, f"{folder} is not an existing directory"))
    if path.is_dir():
        raise ImagekitError(Problem(None, option, f"{path} is a directory, not a file"))
    return path


def _load(catalog: Path) -> Catalog:
    return load_catalog(catalog)


def _select(cat: Catalog, names: list[str], all_: bool) -> list[Image]:
    if all_:
        return list(cat.images.values())
    if not names:
        raise ImagekitError("name at least one image, or pass --all")
    problems = [
        Problem(cat.file, "images", f"unknown image {n!r}", None, did_you_mean(n, cat.images))
        for n in names if n not in cat.images
    ]
    if problems:
        raise ImagekitError(problems)
    return [cat.images[n] for n in names]


def _one(catalog: Path, name: str) -> tuple[Catalog, Image]:
    cat = _load(catalog)
    return cat, _select(cat, [name], False)[0]


@app.command()
def validate(catalog: CatalogOpt = Path("catalog.yaml")) -> None:
    """Check catalog.yaml, stacks/ and profiles/; print every problem found."""
    with _user_errors():
        cat = _load(catalog)
    listed = sum(1 for i in cat.images.values() if i.listed)
    out.print(f"ok: {len(cat.stacks)} stacks, {len(cat.profiles)} profiles, "
              f"{listed} images ({len(cat.images)} with the parents they need)")


@app.command()
def render(
    images: Annotated[list[str] | None, typer.Argument(help="images to render")] = None,
    all_: Annotated[bool, typer.Option("--all", help="every image in the catalog")] = False,
    check: Annotated[bool, typer.Option("--check", help="fail if recipes/ is stale")] = False,
    catalog: CatalogOpt = Path("catalog.yaml"),
) -> None:
    """Write recipes/<image>/Dockerfile and Singularity.def (deterministic)."""
    with _user_errors():
        cat = _load(catalog)
        if check:
            drift = recipes.check(cat)
            if drift:
                for d in drift:
                    err.print(f"stale: {d}")
                err.print("recipes/ is out of date: run `imagekit render --all` and commit it")
                raise typer.Exit(1)
            out.print(f"ok: recipes/ matches the catalog ({len(cat.images)} images)")
            return
        selected = _select(cat, images or [], all_)
        written = recipes.write(cat, selected)
        for image in selected:
            out.print(f"rendered recipes/{image.name}/")
        out.print(f"{len(written)} files in {len(selected)} recipe folders")


@app.command()
def lock(
    names: Annotated[list[str] | None, typer.Argument(help="stacks or images to lock")] = None,
    all_: Annotated[bool, typer.Option("--all", help="every stack with pip packages")] = False,
    check: Annotated[bool, typer.Option(
        "--check", help="fail if a lock is missing or stale (offline)")] = False,
    upgrade: Annotated[bool, typer.Option(
        "--upgrade", help="newest versions the stacks allow (default: keep current pins)")
    ] = False,
    catalog: CatalogOpt = Path("catalog.yaml"),
) -> None:
    """Resolve each stack's pip packages with uv into stacks/<name>.lock (with hashes).

    Pins already in a lock are kept where the stack still allows them (--upgrade moves them)."""
    from imagekit import lock as locks

    with _user_errors():
        cat = _load(catalog)
        lockable = {s.name: s for s in locks.lockable(cat)}
        if check:
            bad = [s for s in locks.check(cat) if s.state != "current"]
            for state in bad:
                err.print(f"[bold red]error:[/] {escape(str(state.problem()))}", markup=True)
            if bad:
                raise typer.Exit(1)
            out.print(f"ok: {len(lockable)} locks match their stacks")
            return
        if not all_ and not names:
            raise ImagekitError("name at least one stack or image, or pass --all")
        wanted: list[str] = []
        problems = []
        for name in ([] if all_ else names or []):
            stack = cat.images[name].stack.name if name in cat.images else name
            if stack in lockable:
                wanted.append(stack)
            elif stack in cat.stacks:
                problems.append(Problem(cat.stacks[stack].file, "pip",
                                        f"stack {stack} installs no pip packages of its own"))
            else:
                problems.append(Problem(None, "NAMES", f"unknown stack or image {name!r}", None,
                                        did_you_mean(name, [*cat.stacks, *cat.images])))
        if problems:
            raise ImagekitError(problems)
        for locked, path in locks.write(cat, list(lockable) if all_ else wanted,
                                        upgrade=upgrade):
            pins = sum(1 for line in path.read_text().split("\n") if "==" in line)
            out.print(f"locked {locked.name}: {pins} packages in {path.relative_to(cat.root)}")


@app.command("list")
def list_(
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable")] = False,
    catalog: CatalogOpt = Path("catalog.yaml"),
) -> None:
    """The image tree, with type, GPU and formats."""
    with _user_errors():
        cat = _load(catalog)
    if as_json:
        rows = [
            {"name": i.name, "parent": i.parent, "stack": i.stack.name,
             "profiles": [p.name for p in i.profiles], "type": i.runtime.type,
             "gpu": i.runtime.gpu, "formats": list(i.formats), "listed": i.listed,
             "platforms": list(i.platforms), "ref": cat.ref(i.name)}
            for i in cat.images.values()
        ]
        out.print_json(json.dumps(rows))
        return
    tree = Tree(f"[bold]{cat.base.image}[/] (base image)")

    def add(node: Tree, name: str) -> None:
        img = cat.images[name]
        flags = [img.runtime.type, "gpu" if img.runtime.gpu else "cpu", "+".join(img.formats)]
        if len(cat.platforms) > 1:
            flags.append("+".join(arch(p) for p in img.platforms))
        if img.profiles:
            flags.append("profiles: " + ",".join(p.name for p in img.profiles))
        if not img.listed:
            flags.append("parent only")
        child = node.add(f"[bold]{name}[/]  [dim]{'  '.join(flags)}[/]")
        for c in cat.children[name]:
            add(child, c)

    for img in cat.images.values():
        if img.parent is None:
            add(tree, img.name)
    out.print(tree)


@app.command()
def show(
    image: Annotated[str, typer.Argument(help="image name")],
    catalog: CatalogOpt = Path("catalog.yaml"),
) -> None:
    """An image's resolved settings, everything it inherits included."""
    with _user_errors():
        cat, img = _one(catalog, image)
    rt = img.runtime
    table = Table(show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column()
    lineage = " -> ".join(i.name for i in cat.lineage(img.name))
    rows: list[tuple[str, str]] = [
        ("image", f"{img.name}  ({cat.ref(img.name)})"),
        ("stack", f"{img.stack.name}  ({img.stack.file})"),
        ("lineage", f"{cat.base.image} -> {lineage}"),
        ("profiles", ", ".join(p.name for p in img.profiles) or "-"),
        ("site profiles", ", ".join(p.name for p in cat.site_profiles) or "-"),
        ("description", img.description),
        ("type / gpu / port", f"{rt.type} / {rt.gpu} / {rt.port}"),
        ("user", f"{rt.user} ({rt.uid}:{rt.gid})"),
        ("start", " ".join((*rt.entrypoint, *rt.command))),
        ("formats / tags", f"{', '.join(img.formats)} / {', '.join(img.tags)}"),
        ("apt", " ".join(img.stack.apt_all + tuple(a for p in img.profiles for a in p.layer.apt))),
        ("pip", " ".join(img.stack.pip_all + tuple(a for p in img.profiles for a in p.layer.pip))),
        ("npm", " ".join(img.stack.npm_all) or "-"),
        ("env", " ".join(f"{k}={v}" for k, v in img.env)),
        ("binds", ", ".join(img.binds) or "-"),
        ("checks", _describe_checks(img)),
    ]
    for key, value in rows:
        table.add_row(key, value)
    out.print(table)


def _describe_checks(img: Image) -> str:
    c = img.checks
    return (f"{len(c.imports)} imports, {len(c.commands)} commands, kernels "
            f"{','.join(c.kernels) or '-'}, {len(c.http)} http, {len(c.execute)} executions")


@app.command()
def schema(
    check: Annotated[bool, typer.Option("--check", help="fail if schemas/ is stale")] = False,
    catalog: CatalogOpt = Path("catalog.yaml"),
) -> None:
    """Write JSON Schemas for catalog.yaml, stacks/*.yaml and profiles/*.yaml to schemas/."""
    folder = catalog.resolve().parent / "schemas"
    if check:
        stale = schemas.stale(folder)
        for name in stale:
            err.print(f"stale: schemas/{name}")
        if stale:
            raise typer.Exit(1)
        out.print("ok: schemas/ is up to date")
        return
    for path in schemas.write(folder):
        out.print(f"wrote {path}")


BuilderOpt = Annotated[
    str, typer.Option("--builder", help="auto, buildkit or classic (the docker SDK's) with "
                                        "Docker; auto or podman with Podman")
]
EngineOpt = Annotated[
    str | None, typer.Option("--engine", envvar="IMAGEKIT_ENGINE",
                             help="docker, podman or auto (Docker when it answers, else "
                                  "Podman); default: the catalog's engine")
]


PlatformOpt = Annotated[
    list[str] | None, typer.Option("--platform", help="linux/amd64 or linux/arm64, repeatable; "
                                                      "default: the catalog's platforms")
]


def _platforms(cat: Catalog, given: list[str] | None) -> tuple[Platform, ...]:
    """The platforms a command works on: those given (each one of the catalog's), else all
    of the catalog's."""
    if not given:
        return cat.platforms
    chosen: list[Platform] = []
    for value in given:
        found = next((p for p in cat.platforms if p == value), None)
        if found is None:
            raise ImagekitError(f"--platform: {value!r} is not among the catalog's platforms "
                                f"({', '.join(cat.platforms)}; {cat.file.name}: platforms)")
        chosen.append(found)
    return tuple(dict.fromkeys(chosen))


def _on(cat: Catalog, name: str, platform: Platform) -> str:
    """An image as reports name it: plain on the catalog's first platform, `name [p]` else."""
    return name if platform == cat.platforms[0] else f"{name} [{platform}]"


@app.command()
def base(
    refresh: Annotated[bool, typer.Option(
        "--refresh", help="pull or bootstrap it again even when present (Debian's updates); "
                          "the images built on it then rebuild")] = False,
    platform: PlatformOpt = None,
    engine: EngineOpt = None,
    catalog: CatalogOpt = Path("catalog.yaml"),
) -> None:
    """Make the catalog's base image exist, one per platform: present, pulled, or
    bootstrapped (another architecture's under emulation)."""
    from imagekit.engine.base import ensure_base
    from imagekit.engine.choice import connect

    with _user_errors():
        cat = _load(catalog)
        platforms = _platforms(cat, platform)
        connected = connect(cat, engine)
        found = [(p, ensure_base(cat, connected, lambda text: out.print(text, markup=False),
                                 refresh=refresh, platform=p)) for p in platforms]
    for p, how in found:
        out.print(f"{cat.base_ref(p)}: {how}")


@app.command()
def doctor(catalog: CatalogOpt = Path("catalog.yaml")) -> None:
    """Check the engine, BuildKit and the tools builds and SIFs need."""
    from imagekit.doctor import diagnose

    findings = diagnose(catalog)
    table = Table(header_style="bold")
    for col in ("check", "state", "detail / how to fix"):
        table.add_column(col)
    for f in findings:
        table.add_row(f.name, "[green]ok[/]" if f.ok else "[red]missing[/]", f.detail)
    out.print(table)
    if not all(f.ok or f.optional for f in findings):
        raise typer.Exit(1)


@app.command()
def build(
    images: Annotated[list[str] | None, typer.Argument(help="images to build")] = None,
    all_: Annotated[bool, typer.Option("--all", help="every image in the catalog")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print the plan only")] = False,
    builder: BuilderOpt = "auto",
    force: Annotated[bool, typer.Option("--force", help="rebuild even when cached")] = False,
    plain: Annotated[bool, typer.Option("--plain", help="log lines, no live display")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the outcome as JSON")] = False,
    formats: Annotated[list[str] | None, typer.Option(
        "--format", help="docker or sif (repeatable); default: the image's catalog formats",
    )] = None,
    sif_level: Annotated[int, typer.Option("--sif-level", min=1, max=9,
                                           help="gzip level of the SIF's squashfs")] = 5,
    sif_method: Annotated[str, typer.Option(
        "--sif-method", help="auto (apptainer when on PATH), native or apptainer")] = "auto",
    from_registry: Annotated[bool, typer.Option(
        "--from-registry", help="a CI runner: build only the named images; each one's parent "
                                "is taken from the engine or pulled by the digest of its tree "
                                "tag, never built, and a named image the registry already "
                                "holds for this checkout is pulled (see `imagekit plan`)")
    ] = False,
    platform: PlatformOpt = None,
    engine_choice: EngineOpt = None,
    catalog: CatalogOpt = Path("catalog.yaml"),
) -> None:
    """Build images (parents first, each once, unchanged ones from cache) for each of their
    platforms; SIFs into dist/."""
    from imagekit import build as builds
    from imagekit.engine.base import ensure_base
    from imagekit.engine.choice import connect
    from imagekit.engine.emulation import unable
    from imagekit.progress import LiveDisplay, PlainDisplay, human_size, summary
    from imagekit.sif import build_sif

    with _user_errors():
        cat = _load(catalog)
        for f in formats or []:
            if f not in ("docker", "sif"):
                raise ImagekitError(f"--format: {f!r} is not one of docker, sif")
        if sif_method not in ("auto", "native", "apptainer"):
            raise ImagekitError(f"--sif-method: {sif_method!r} is not auto, native or apptainer")
        if builder not in ("auto", "buildkit", "classic", "podman"):
            raise ImagekitError(f"--builder: {builder!r} is not one of auto, buildkit, "
                                "classic, podman")
        selected = _select(cat, images or [], all_)
        platforms = _platforms(cat, platform)
        if platform:
            for img in selected:
                if not any(p in img.platforms for p in platforms):
                    raise ImagekitError(f"{img.name} is not built for {', '.join(platforms)} "
                                        f"({cat.file.name}: its platforms are "
                                        f"{', '.join(img.platforms)})")
        if from_registry and platforms != cat.platforms[:1]:
            raise ImagekitError("--from-registry: CI runners share the catalog's first "
                                f"platform ({cat.platforms[0]}) only, so far: build the "
                                "others without it")
        names = [i.name for i in selected]
        wants_sif = [i for i in selected if "sif" in (formats or i.formats)]
        if wants_sif:
            from imagekit.publish.signing import sif_key

            sif_key()  # a signing key set but unusable: said before anything is built
        stale = _stale_locks(cat, names)
        if stale:
            raise ImagekitError(stale)
        engine = connect(cat, engine_choice)
        chosen = engine.builder(builder)
        builds.check_builder(cat, chosen)
        log = err if as_json else out
        if dry_run:
            outcomes = [o for p in platforms for o in builds.dry_run(cat, engine, chosen, names, p)]
            if as_json:
                out.print_json(json.dumps([o.as_dict() for o in outcomes]))
            else:
                out.print(f"builder: {chosen.description}")
                for n, o in enumerate(outcomes, 1):
                    parent = cat.images[o.image].parent or cat.base_ref(o.platform)
                    where = f" [{o.platform}]" if len(platforms) > 1 else ""
                    out.print(f"{n:2}. {o.image:<16} FROM {parent:<24} {o.status}{where}")
            return
        log.print(f"builder: {chosen.description}", markup=False)
        say = lambda text: log.print(text, markup=False)  # noqa: E731
        shared = None
        if from_registry:
            from imagekit.publish.shared import RegistryShare

            shared = RegistryShare(cat, engine, say)
        outcomes = []
        sifs = []
        for p in platforms:
            wanted = [n for n in names if p in cat.images[n].platforms]
            why = unable(p) if wanted else None
            if why is not None:
                # What this machine can build is built; what it cannot is said, and fails.
                log.print(f"{p}: not built: {why}", markup=False)
                outcomes += [builds.Outcome(n, cat.ref(n, platform=p), "skipped", error=why,
                                            platform=p) for n in wanted]
                continue
            if not wanted:
                continue
            if len(platforms) > 1:
                log.print(f"{p}:", markup=False)
            if not from_registry:
                ensure_base(cat, engine, say, platform=p)
            order = [i.name for i in cat.closure(wanted)]
            live = log.is_terminal and not plain and not as_json and not from_registry
            display = LiveDisplay(log, order) if live else PlainDisplay(log)
            with display:
                done = builds.run_builds(
                    cat, engine, chosen, wanted, force=force, on_line=display.line,
                    on_status=display.status, shared=shared, platform=p,
                    ensure_root=functools.partial(ensure_base, cat, engine, say, platform=p))
            outcomes += done
            ok = {o.image for o in done if o.status in ("built", "cached", "pulled",
                                                        "present")}
            for image in wants_sif:
                if image.name not in ok:
                    continue
                log.print(f"[{image.name}] converting to SIF", markup=False)
                result = build_sif(cat, engine, image, level=sif_level, force=force,
                                   method=sif_method, platform=p)
                log.print(f"[{image.name}] {result.status} {result.path} ({result.method}, "
                          f"{human_size(result.size)}, {result.total_s} s)", markup=False)
                sifs.append(result)
    if as_json:
        out.print_json(json.dumps({"images": [o.as_dict() for o in outcomes],
                                   "sif": [r.as_dict() for r in sifs]}))
    else:
        out.print(summary(outcomes))
    if any(o.status in ("failed", "skipped") for o in outcomes):
        raise typer.Exit(1)


def _stale_locks(cat: Catalog, names: list[str]) -> list[Problem]:
    """Every stale lock the build would install from, before anything is built."""
    from imagekit import lock as locks

    problems = []
    for image in cat.closure(names):
        try:
            locks.for_image(cat, image)
        except ImagekitError as exc:
            problems += [p for p in exc.problems if p not in problems]
    return problems


@app.command("test")
def test_(
    images: Annotated[list[str] | None, typer.Argument(help="images to test")] = None,
    all_: Annotated[bool, typer.Option("--all", help="every buildable image")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the results as JSON")] = False,
    platform: PlatformOpt = None,
    engine_choice: EngineOpt = None,
    catalog: CatalogOpt = Path("catalog.yaml"),
) -> None:
    """Smoke-test built images, on each of their platforms: their checks, then their
    consumers' runtime contract (another architecture's under emulation)."""
    from imagekit.checks import record
    from imagekit.checks.runner import test_image
    from imagekit.engine.choice import connect
    from imagekit.engine.emulation import unable

    results = []
    latencies: dict[str, dict[str, float]] = {}
    with _user_errors():
        cat = _load(catalog)
        selected = _select(cat, images or [], all_)
        platforms = _platforms(cat, platform)
        engine = connect(cat, engine_choice)
        log = err if as_json else out

        def show(result: CheckResult) -> None:
            mark = "[green]PASS[/]" if result.ok else "[red]FAIL[/]"
            log.print(f"{mark} {result.image}: {escape(result.name)} ({result.seconds} s)")
            log.print(f"     {escape(result.evidence)}", style="dim" if result.ok else None)

        not_built: list[str] = []
        pairs = [(i, p) for p in platforms for i in selected if p in i.platforms]
        if all_:
            # --all tests what is built here; the rest is reported, not failed.
            missing = [(i, p) for i, p in pairs if engine.image(cat.ref(i.name, platform=p))
                       is None]
            pairs = [pair for pair in pairs if pair not in missing]
            for i, p in missing:
                not_built.append(_on(cat, i.name, p))
                log.print(f"[yellow]SKIP[/] {i.name}: not built ({cat.ref(i.name, platform=p)})")
        cannot: list[str] = []
        # Interrupted, main() removes what this process started.
        for image, p in pairs:
            why = unable(p)
            if why is not None:
                # Never skipped quietly: an image that cannot be run here is not tested.
                log.print(f"[red]FAIL[/] {image.name} [{p}]: not tested: {escape(why)}")
                cannot.append(f"{image.name} [{p}]")
                continue
            if len(platforms) > 1:
                log.print(f"{image.name} [{p}]:", markup=False)
            target = test_image(engine, cat, image, show, platform=p)
            results += target.results
            latencies[_on(cat, image.name, p)] = target.latencies
            record.save(cat, image.name, target.ref, target.results)
    failed = [r for r in results if not r.ok]
    if as_json:
        out.print_json(json.dumps({"results": [asdict(r) for r in results],
                                   "latencies": latencies, "not_built": not_built,
                                   "not_tested": cannot}))
    else:
        out.print(f"{len(results) - len(failed)} passed, {len(failed)} failed"
                  + (f", {len(not_built)} images not built" if not_built else "")
                  + (f", {len(cannot)} not tested (no emulation)" if cannot else ""))
    if failed or cannot:
        raise typer.Exit(1)


@app.command()
def publish(
    images: Annotated[list[str] | None, typer.Argument(help="images to publish")] = None,
    all_: Annotated[bool, typer.Option("--all", help="every listed image built here")] = False,
    skip_tests: Annotated[bool, typer.Option(
        "--skip-tests", help="publish images that did not pass `imagekit test` (no moving "
                             "tag is pushed for them)")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the outcome as JSON")] = False,
    from_registry: Annotated[bool, typer.Option(
        "--from-registry", help="CI's last job: publish what CI runners pushed for this "
                                "checkout (`imagekit push`), moving tags in the registry; "
                                "nothing is built or pushed again")] = False,
    pins: Annotated[list[str] | None, typer.Option(
        "--pin", help="IMAGE=DIGEST (repeatable): roll IMAGE back to a digest an earlier "
                      "catalog published; its tags and every export follow")] = None,
    engine_choice: EngineOpt = None,
    catalog: CatalogOpt = Path("catalog.yaml"),
) -> None:
    """Push tested images and SIFs by digest, then write dist/catalog.json and the exports."""
    from imagekit.engine.choice import connect
    from imagekit.progress import human_size
    from imagekit.publish.pipeline import publish as run_publish

    log = err if as_json else out
    with _user_errors():
        cat = _load(catalog)
        names = None if all_ or pins else [i.name for i in _select(cat, images or [], False)]
        if skip_tests:
            err.print("[bold yellow]WARNING: --skip-tests: images that did not pass `imagekit "
                      "test` are published, under an untested-<id> tag only, and marked "
                      "untested in the catalog[/]")
        say = lambda text: log.print(text, markup=False)  # noqa: E731
        if pins:
            from imagekit.publish.retention import pin

            if images or all_ or from_registry or skip_tests:
                raise ImagekitError("--pin republishes the catalog with earlier digests: "
                                    "name no image and pass no other option")
            report = pin(cat, pins, say)
        elif from_registry:
            from imagekit.publish.shared import publish_from_registry

            if skip_tests:
                raise ImagekitError("--skip-tests: the registry holds tested images only "
                                    "(`imagekit push` refuses untested ones)")
            report = publish_from_registry(cat, names, say)
        else:
            report = run_publish(cat, connect(cat, engine_choice), names,
                                 skip_tests=skip_tests, log=say)
    if as_json:
        out.print_json(json.dumps(report.as_dict()))
        return
    table = Table(header_style="bold")
    for col in ("image", "digest", "tags", "tested", "sent", "SIF sent"):
        table.add_column(col)
    for line in report.images:
        digest = line.reference.rpartition("@")[2]
        table.add_row(line.image, digest[:19] + "…", ", ".join(line.tags), line.tested,
                      human_size(line.sent),
                      human_size(line.sif_sent) if line.sif_reference else "-")
    out.print(table)
    state = "written" if report.changed else "unchanged"
    out.print(f"catalog: {report.catalog} ({state}), in the registry as "
              f"{report.catalog_digest}", markup=False)
    out.print(f"exports: {len(report.exports)} files in dist/exports/", markup=False)
    out.print(f"{human_size(report.sent)} sent in {report.seconds} s", markup=False)


@app.command()
def plan(
    as_json: Annotated[bool, typer.Option("--json", help="the whole plan, machine-readable")
                       ] = False,
    changed: Annotated[list[str] | None, typer.Option(
        "--changed", help="a file of the checkout that changed (repeatable): print only the "
                          "images it rebuilds, one per line")] = None,
    catalog: CatalogOpt = Path("catalog.yaml"),
) -> None:
    """The build graph for CI: images, parents, waves, tree keys, what each file rebuilds."""
    from imagekit.ci.plan import make_plan

    with _user_errors():
        cat = _load(catalog)
        the_plan = make_plan(cat)
    if changed is not None:
        for name in the_plan.affected(changed):
            out.print(name, markup=False)
        return
    if as_json:
        sys.stdout.write(the_plan.to_json())
        return
    table = Table(header_style="bold")
    for col in ("wave", "image", "FROM", "formats", "tree key", "files"):
        table.add_column(col, no_wrap=True)
    for image in the_plan.images:
        table.add_row(str(image.level), image.name, image.parent or image.from_,
                      "+".join(image.formats), image.key[:12], str(len(image.sources)))
    out.print(table)
    out.print(f"{len(the_plan.images)} images in {len(the_plan.waves)} waves. `--json` for "
              "each image's key inputs and files, `--changed FILE` for what a change "
              "rebuilds.", markup=False)


@app.command()
def site(
    published: Annotated[Path | None, typer.Option(
        "--published", help="the published catalog; default: dist/catalog.json")] = None,
    output: Annotated[Path | None, typer.Option(
        "--output", help="the site's folder; default: dist/site")] = None,
    catalog: CatalogOpt = Path("catalog.yaml"),
) -> None:
    """Write the static HTML catalog (an index and a page per image) from the published
    catalog: what is in each image, how it was tested, and how to run it."""
    from imagekit.publish.catalog import read
    from imagekit.site.build import write_site

    with _user_errors():
        dist = catalog.resolve().parent / "dist"
        doc = read(published if published is not None else dist / "catalog.json")
        folder = output if output is not None else dist / "site"
        written = write_site(doc, folder)
    size = sum(p.stat().st_size for p in written)
    out.print(f"wrote {folder}: {len(written)} files, {size / 1000:.0f} kB", markup=False)


ci_app = typer.Typer(help="CI workflows derived from the stack tree.", no_args_is_help=True)
app.add_typer(ci_app, name="ci")


@ci_app.command("github")
def ci_github(
    check: Annotated[bool, typer.Option(
        "--check", help="fail if the workflow file is missing or stale")] = False,
    output: Annotated[Path | None, typer.Option(
        "--output", help="default: .github/workflows/imagekit.yml next to the catalog")
    ] = None,
    catalog: CatalogOpt = Path("catalog.yaml"),
) -> None:
    """Write the GitHub Actions workflow: one job per image, `needs:` its parent's job."""
    from imagekit.ci.github import WORKFLOW, workflow
    from imagekit.ci.plan import make_plan
    from imagekit.publish.shared import one_platform

    with _user_errors():
        cat = _load(catalog)
        one_platform(cat, "ci github")
        path = output if output is not None else cat.root / WORKFLOW
        text = workflow(make_plan(cat), cat.root)
        if check:
            if not path.is_file() or path.read_text() != text:
                err.print(f"[bold red]error:[/] {path} is "
                          f"{'stale' if path.is_file() else 'missing'}: run `imagekit ci "
                          "github` and commit it", markup=True, highlight=False)
                raise typer.Exit(1)
            out.print(f"ok: {path} matches the stack tree", markup=False)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, text.encode())
    out.print(f"wrote {path}", markup=False)


@app.command()
def prune(
    keep: Annotated[int, typer.Option("--keep", min=1,
                                      help="the last N published catalogs keep what they name")
                    ] = 5,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="say what would go")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the outcome as JSON")] = False,
    catalog: CatalogOpt = Path("catalog.yaml"),
) -> None:
    """Delete from the registry what imagekit pushed that none of the last N published
    catalogs names (never a digest a kept catalog names, nor one a followed tag points at),
    and the catalogs older than those N. The registry frees the blobs at its next garbage
    collection."""
    from imagekit.publish.retention import prune as run_prune

    log = err if as_json else out
    with _user_errors():
        cat = _load(catalog)
        report = run_prune(cat, keep, lambda text: log.print(text, markup=False),
                           dry_run=dry_run)
    if as_json:
        out.print_json(json.dumps(report.as_dict()))
        return
    verb = "would delete" if dry_run else "deleted"
    out.print(f"kept {len(report.kept_catalogs)} catalogs and the {report.kept} manifests they "
              f"name; {verb} {len(report.deleted)} manifests and "
              f"{len(report.deleted_catalogs)} older catalogs", markup=False)


@app.command()
def verify(
    ref: Annotated[str, typer.Argument(help="an image of the published catalog: its name, "
                                            "or REPOSITORY@DIGEST")],
    key: Annotated[Path | None, typer.Option(
        "--key", help="the site's cosign public key, to check the image's signature")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the findings as JSON")
                       ] = False,
    catalog: CatalogOpt = Path("catalog.yaml"),
) -> None:
    """Check a published image against the catalog the registry holds: digest and tags,
    cosign signature, SBOM, test record and SIF."""
    from imagekit.publish.verify import as_dicts
    from imagekit.publish.verify import verify as run_verify

    with _user_errors():
        cat = _load(catalog)
        image, findings = run_verify(cat, ref, key)
    if as_json:
        out.print_json(json.dumps({"image": image.name, "reference": image.reference,
                                   "findings": as_dicts(findings)}))
    else:
        out.print(f"{image.name}: {image.reference}", markup=False)
        for f in findings:
            mark = "[green]PASS[/]" if f.ok else "[red]FAIL[/]"
            out.print(f"{mark} {f.check}: {escape(f.evidence)}")
    if not all(f.ok for f in findings):
        raise typer.Exit(1)


@app.command()
def push(
    images: Annotated[list[str], typer.Argument(help="images to push")],
    as_json: Annotated[bool, typer.Option("--json", help="print the outcome as JSON")] = False,
    engine_choice: EngineOpt = None,
    catalog: CatalogOpt = Path("catalog.yaml"),
) -> None:
    """A CI runner's share: a tested image and its SIF to the registry under its tree tag,
    with the record `publish --from-registry` reads. Moves no tag users follow."""
    from imagekit.engine.choice import connect
    from imagekit.publish.shared import push as run_push

    log = err if as_json else out
    with _user_errors():
        cat = _load(catalog)
        names = [i.name for i in _select(cat, images, False)]
        lines = run_push(cat, connect(cat, engine_choice), names,
                         lambda text: log.print(text, markup=False))
    if as_json:
        out.print_json(json.dumps({"images": [asdict(line) for line in lines]}))
        return
    for line in lines:
        out.print(f"{line.image}: {line.reference}", markup=False)


@app.command("export")
def export_(
    target: Annotated[str, typer.Argument(help="kubespawner, dockerspawner, kubeflow, "
                                               "workspacekind, setting, batchspawner, armada, "
                                               "kube")],
    image: Annotated[str | None, typer.Argument(
        help="kube: the image whose Pod and PersistentVolumeClaim to write")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o",
                                                help="write here instead of stdout")] = None,
    file: Annotated[str | None, typer.Option(
        "--file", help="one of the target's files (e.g. kubespawner.py); default: its first")
    ] = None,
    published: Annotated[Path | None, typer.Option(
        "--published", help="the published catalog; default: dist/catalog.json")] = None,
    ssh: SshOpt = None,
    ssh_config: SshConfigOpt = None,
    catalog: CatalogOpt = Path("catalog.yaml"),
) -> None:
    """Write one consumer's configuration, derived from the published catalog only."""
    from imagekit.exports import ExportFile, batchspawner, exporters
    from imagekit.publish.catalog import read

    with _user_errors():
        known = exporters()
        if target not in known:
            raise ImagekitError(Problem(None, "TARGET", f"unknown export {target!r}",
                                        hint=did_you_mean(target, known) or
                                        f"one of {', '.join(known)}"))
        login = _ssh_login(ssh, ssh_config)
        if login is not None and target != "batchspawner":
            raise ImagekitError(Problem(None, "--ssh", f"applies to batchspawner, not {target}"))
        if (image is None) != (target != "kube"):
            raise ImagekitError(Problem(None, "IMAGE", "kube writes one image's manifests: "
                                        "name it (imagekit export kube scipy)" if image is None
                                        else f"only kube takes an image, not {target}"))
        source = published or catalog.resolve().parent / "dist" / "catalog.json"
        files = (batchspawner.export(read(source), login) if login is not None
                 else known[target](read(source)))
        chosen = files[0] if files else ExportFile(target, "")
        if image is not None:
            by_image = {f.name: f for f in files}
            if f"kube-{image}.yaml" not in by_image:
                published_names = [n.removeprefix("kube-").removesuffix(".yaml")
                                   for n in by_image]
                raise ImagekitError(Problem(source, "images", f"{image!r} is not published",
                                            hint=did_you_mean(image, published_names) or
                                            f"published: {', '.join(published_names)}"))
            chosen = by_image[f"kube-{image}.yaml"]
        if file is not None:
            by_name = {f.name: f for f in files}
            if file not in by_name:
                raise ImagekitError(Problem(None, "--file", f"{target} writes "
                                            f"{', '.join(by_name)}, not {file!r}"))
            chosen = by_name[file]
    if output is None:
        out.print(chosen.text, markup=False, highlight=False, end="")
        return
    with _user_errors():
        _writable(output)
        write_atomically(output, chosen.text)
    out.print(f"wrote {output}")


@app.command()
def inspect(
    path: Annotated[Path, typer.Argument(help="a .sif file")],
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable")] = False,
) -> None:
    """A SIF's header, objects, labels and definition file."""
    from imagekit.sif import inspect as inspect_sif

    with _user_errors():
        if not path.is_file():
            raise ImagekitError(Problem(path, "", "no such SIF file"))
        try:
            info = inspect_sif(path)
        except BuildFailed as exc:
            reason = str(exc).splitlines()[0].partition(": ")[2].rstrip(":") or "unreadable"
            raise ImagekitError(Problem(path, "", f"not a SIF image ({reason})")) from None
    if as_json:
        out.print_json(json.dumps(info))
        return
    out.print(f"launch script: {info['launch']}", markup=False)
    out.print(info["header"], markup=False)
    table = Table(title="objects", header_style="bold")
    for col in ("id", "group", "type", "start", "end", "size"):
        table.add_column(col)
    for o in info["objects"]:
        table.add_row(str(o["id"]), o["group"], o["kind"], str(o["start"]), str(o["end"]),
                      str(o["end"] - o["start"]))
    out.print(table)
    out.print("[bold]labels[/]")
    for key, value in sorted(info["labels"].items()):
        out.print(f"  {key} = {value}", markup=False)
    out.print("[bold]definition file[/]")
    out.print(info["deffile"], markup=False)


RuntimeOpt = Annotated[str, typer.Option("--runtime", help="apptainer or singularity")]
SshOpt = Annotated[str | None, typer.Option(
    "--ssh", help="batchspawner: run sbatch/squeue/scancel on a login node over SSH, as "
                  "USER@HOST[:PORT] (the hub needs no Slurm client)")]
SshConfigOpt = Annotated[Path | None, typer.Option(
    "--ssh-config", help="with --ssh: an ssh_config file (key, known hosts) for ssh -F")]


def _ssh_login(ssh: str | None, config: Path | None) -> hpc.SshLogin | None:
    from imagekit.hpc import SshLogin

    if ssh is None:
        if config is not None:
            raise ImagekitError(Problem(None, "--ssh-config", "needs --ssh USER@HOST"))
        return None
    return SshLogin.parse(ssh, config)
SifOpt = Annotated[str | None, typer.Option("--sif", help="SIF path on the cluster; default: "
                                                          "dist/<image>_<tag>.sif")]


@app.command("run-cmd")
def run_cmd(
    image: Annotated[str, typer.Argument(help="image name")],
    command: Annotated[list[str] | None, typer.Argument(help="command; default: a shell")] = None,
    runtime: RuntimeOpt = "singularity",
    sif: SifOpt = None,
    catalog: CatalogOpt = Path("catalog.yaml"),
) -> None:
    """Print the exact `singularity exec` line for an image, with its profile's binds."""
    from imagekit import hpc

    with _user_errors():
        cat, img = _one(catalog, image)
        direct, by_env = hpc.run_cmd(cat, img, command or ["bash"], runtime, sif)
    out.print(direct, markup=False, highlight=False)
    out.print(by_env, markup=False, highlight=False)


@app.command()
def tunnel(
    image: Annotated[str, typer.Argument(help="image name")],
    partition: Annotated[str | None, typer.Option(help="Slurm partition")] = None,
    time: Annotated[str, typer.Option(help="wall time")] = "04:00:00",
    mem: Annotated[str | None, typer.Option(help="memory, e.g. 8G")] = None,
    cpus: Annotated[int | None, typer.Option(help="CPUs per task", min=1)] = None,
    gpus: Annotated[int | None, typer.Option(help="GPUs (gres gpu:N)", min=1)] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o",
                                                help="write the script here")] = None,
    submit: Annotated[bool, typer.Option(help="submit it with sbatch")] = False,
    runtime: RuntimeOpt = "apptainer",
    sif: SifOpt = None,
    catalog: CatalogOpt = Path("catalog.yaml"),
) -> None:
    """Write an sbatch script that serves the image on a node behind an SSH tunnel."""
    from imagekit import hpc

    with _user_errors():
        cat, img = _one(catalog, image)
        if gpus and not img.runtime.gpu:
            err.print(f"warning: {image} is not a GPU image; --gpus adds --gres only")
        options = hpc.JobOptions(partition, time, mem, cpus, gpus)
        script = hpc.tunnel_script(cat, img, options, runtime, sif)
        target = output or (Path(f"imagekit-{img.name}.sbatch") if submit else None)
        if target is None:
            out.print(script, markup=False, highlight=False, end="")
            return
        hpc.write_script(_writable(target), script)
        out.print(f"wrote {target}")
        if submit:
            out.print(hpc.submit(target))


spawner_app = typer.Typer(help="Spawner configuration for an image.", no_args_is_help=True)
app.add_typer(spawner_app, name="spawner")


@spawner_app.command("batchspawner")
def spawner_batchspawner(
    image: Annotated[str, typer.Argument(help="image name")],
    partition: Annotated[str | None, typer.Option(help="default Slurm partition")] = None,
    runtime: RuntimeOpt = "apptainer",
    sif: SifOpt = None,
    ssh: SshOpt = None,
    ssh_config: SshConfigOpt = None,
    catalog: CatalogOpt = Path("catalog.yaml"),
) -> None:
    """Print jupyterhub_config.py lines: SlurmSpawner running the image's SIF."""
    from imagekit import hpc

    with _user_errors():
        login = _ssh_login(ssh, ssh_config)
        cat, img = _one(catalog, image)
        text = hpc.batchspawner_config(cat, img, runtime, sif, partition, login)
    out.print(text, markup=False, highlight=False, end="")


@app.command()
def version() -> None:
    """Print imagekit's version."""
    out.print(__version__)


class Interrupted(BaseException):
    """Ctrl-C or SIGTERM: unwinds every step (its `finally` clean-ups run) up to main().

    Not KeyboardInterrupt, which typer turns into an exit of its own before main() could
    remove what the interrupted step had started.
    """


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
