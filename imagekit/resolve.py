"""Specs -> the resolved model: inheritance, references, cycles, build order.

`load_catalog(path)` is the single entry point every command uses. It collects every problem
in every file before raising, so a user fixes a catalog in one pass. Its stages, each usable
alone: read (`read_specs`: files -> specs), merge (`resolve_stacks`, `resolve_profiles`,
`resolve_site`: inheritance and the site's settings), images (`list_images`,
`add_parent_images`: references between images, stacks and profiles) and check
(`check_platforms`, `resolve_defaults`: what holds only between images).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar

from packaging.utils import canonicalize_name

from imagekit import lockfile
from imagekit.errors import ImagekitError, Problem, did_you_mean
from imagekit.load import Loc, parse
from imagekit.model import (
    BaseSource,
    Catalog,
    FileCopy,
    Image,
    Layer,
    MergedChecks,
    PipLock,
    Profile,
    Resources,
    Runtime,
    Stack,
)
from imagekit.schema import (
    SIF_LEVELS,
    CatalogSpec,
    Consumer,
    Format,
    Healthcheck,
    ImageSpec,
    ProfileSpec,
    SiteSettings,
    StackSpec,
    VersionTag,
)
from imagekit.schema import (
    Layer as LayerSpec,
)

SpecT = TypeVar("SpecT", StackSpec, ProfileSpec)
_NAME_OK = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
_RUNTIME_FIELDS = ("type", "port", "command", "entrypoint", "user", "uid", "gid", "venv")


def load_catalog(path: Path) -> Catalog:
    problems: list[Problem] = []
    specs = read_specs(path, problems)
    stacks = resolve_stacks(specs.stacks, specs.root, problems, specs.broken_stacks)
    profiles = resolve_profiles(specs, problems)
    site_profiles, site = resolve_site(specs, profiles, problems)
    listed = list_images(specs, stacks, profiles, site_profiles, problems)
    check_sif(specs, problems)
    check_layers(specs, problems)
    if problems:
        raise ImagekitError(problems)
    images = add_parent_images(specs.catalog, stacks, [img for _, img in listed], site_profiles)
    check_platforms(specs, listed, images, problems)
    defaults = resolve_defaults(specs, images, [img for _, img in listed], problems)
    if problems:
        raise ImagekitError(problems)
    return _catalog(specs, site, site_profiles, stacks, profiles, images, defaults)


# --- read: YAML files -> specs ----------------------------------------------------------------

@dataclass(frozen=True)
class Specs:
    """What the catalog's files say, each file parsed and validated, nothing resolved yet."""

    file: Path  # the catalog file, absolute
    catalog: CatalogSpec
    line_of: Callable[[Loc], int | None]  # where a key of the catalog file is
    stacks: dict[str, tuple[Path, StackSpec]]
    profiles: dict[str, tuple[Path, ProfileSpec]]
    # Files that exist but did not parse: already reported, so not reported again as unknown.
    broken_stacks: frozenset[str] = frozenset()
    broken_profiles: frozenset[str] = frozenset()

    @property
    def root(self) -> Path:
        return self.file.parent


def read_specs(path: Path, problems: list[Problem]) -> Specs:
    """The catalog file and every stack and profile file beside it. Raises when the catalog
    file itself is missing or unusable; any other file's problems are added to `problems`."""
    path = path.resolve()
    if not path.is_file():
        raise ImagekitError(Problem(path, "", "catalog file not found (use --catalog PATH)"))
    spec, doc, found = parse(path, CatalogSpec)
    problems += found
    broken_stacks: set[str] = set()
    stacks = _read_dir(path.parent / "stacks", StackSpec, problems, broken_stacks)
    broken_profiles: set[str] = set()
    profiles = _read_dir(path.parent / "profiles", ProfileSpec, problems, broken_profiles)
    if spec is None:
        raise ImagekitError(problems)
    return Specs(path, spec, doc.line_of, stacks, profiles, frozenset(broken_stacks),
                 frozenset(broken_profiles))


def _read_dir(
    folder: Path, spec_type: type[SpecT], problems: list[Problem], broken: set[str]
) -> dict[str, tuple[Path, SpecT]]:
    out: dict[str, tuple[Path, SpecT]] = {}
    if not folder.is_dir():
        return out
    for file in sorted(folder.glob("*.y*ml")):
        if file.suffix not in (".yaml", ".yml"):
            continue
        if not _NAME_OK.fullmatch(file.stem):
            problems.append(Problem(file, "", f"file name {file.stem!r} is not a valid name "
                                              "(lowercase letters, digits, . _ -)"))
            continue
        if file.stem in out:
            problems.append(Problem(file, "", f"duplicate name {file.stem!r} "
                                              f"(also {out[file.stem][0].name})"))
            continue
        spec, _doc, found = parse(file, spec_type)
        problems += found
        if spec is not None:
            out[file.stem] = (file, spec)
        else:
            broken.add(file.stem)
    return out


def _layer(origin: str, spec: LayerSpec, files_root: Path, file: Path, context_dir: str,
           problems: list[Problem], binds: tuple[str, ...] = ()) -> Layer:
    copies = []
    for i, f in enumerate(spec.files):
        source = files_root / f.src
        if not source.is_file():
            problems.append(Problem(file, f"files[{i}].src",
                                    f"{source} does not exist or is not a file"))
            continue
        copies.append(FileCopy(source, f"{context_dir}/{f.src}", f.dest, f.mode))
    return Layer(
        origin=origin,
        apt=tuple(spec.apt),
        setup=tuple(spec.setup),
        pip=tuple(spec.pip),
        npm=tuple(spec.npm),
        post=tuple(spec.post),
        env=tuple(spec.env.items()),
        args=tuple(spec.args.items()),
        files=tuple(copies),
        labels=tuple(spec.labels.items()),
        binds=binds,
    )


def _profile(name: str, file: Path, spec: ProfileSpec, root: Path,
             problems: list[Problem]) -> Profile:
    layer = _layer(f"profile {name}", spec, root / "profiles" / "files", file,
                   "files/profiles", problems, tuple(spec.binds))
    return Profile(name, file, spec.description, layer, spec.site, spec.checks)


def _stack_order(stacks: dict[str, Stack]) -> list[str]:
    def depth(name: str) -> int:
        parent = stacks[name].parent
        return 0 if parent is None else 1 + depth(parent)

    return sorted(stacks, key=lambda n: (depth(n), n))


# --- merge: inheritance down the stack tree; profiles; the site's settings ----------------------

def resolve_stacks(specs: dict[str, tuple[Path, StackSpec]], root: Path,
                   problems: list[Problem], broken: AbstractSet[str] = frozenset()
                   ) -> dict[str, Stack]:
    """Each stack with everything it inherits; a stack whose parent is unknown, broken or
    in a cycle is left out (the problem is reported once, on the stack that causes it)."""
    resolved: dict[str, Stack] = {}
    bad: set[str] = set(broken)

    for name, (file, spec) in specs.items():
        if spec.extends in broken:
            bad.add(name)
        elif spec.extends is not None and spec.extends not in specs:
            problems.append(Problem(file, "extends", f"unknown parent stack {spec.extends!r}",
                                    None, did_you_mean(spec.extends, specs)))
            bad.add(name)

    def resolve(name: str, trail: tuple[str, ...]) -> Stack | None:
        if name in resolved:
            return resolved[name]
        if name in bad:
            return None
        file, spec = specs[name]
        if name in trail:
            cycle = " -> ".join((*trail[trail.index(name):], name))
            problems.append(Problem(file, "extends", f"inheritance cycle: {cycle}"))
            bad.update(trail)
            return None
        parent = resolve(spec.extends, (*trail, name)) if spec.extends else None
        if spec.extends and parent is None:
            bad.add(name)
            return None
        stack = _stack(name, file, spec, parent, root, problems)
        if stack is None:
            bad.add(name)
        else:
            resolved[name] = stack
        return stack

    for name in specs:
        resolve(name, ())
    return resolved


def _stack(name: str, file: Path, spec: StackSpec, parent: Stack | None, root: Path,
           problems: list[Problem]) -> Stack | None:
    layer = _layer(f"stack {name}", spec, root / "stacks" / "files", file, "files/stacks",
                   problems)
    if parent is None:
        runtime = _root_runtime(file, spec, problems)
        if runtime is None:
            return None
        inherited = _Inherited()
    else:
        runtime = _child_runtime(spec, parent.runtime)
        inherited = _Inherited.of(parent)
    if not spec.description.strip():
        problems.append(Problem(file, "description", "every stack needs a description"))
        return None
    version_tags = {t.prefix: t for t in (*inherited.version_tags, *spec.version_tags)}
    return Stack(
        name=name,
        file=file,
        description=spec.description.strip(),
        parent=parent.name if parent else None,
        layer=layer,
        runtime=runtime,
        env=tuple({**dict(inherited.env), **spec.env}.items()),
        labels=tuple({**dict(inherited.labels), **spec.labels}.items()),
        checks=inherited.checks.plus(spec.checks),
        version_tags=tuple(version_tags.values()),
        apt_all=_extended(inherited.apt, spec.apt),
        pip_all=_extended(inherited.pip, spec.pip),
        npm_all=_extended(inherited.npm, spec.npm),
        pip_exclude_all=_extended(inherited.pip_exclude, spec.pip_exclude),
        apt_exclude=tuple(spec.apt_exclude),
        pip_prune_all=_extended(inherited.pip_prune, spec.pip_prune),
        lock=_lock(file, problems),
        pip_layers=_pip_layers(file, spec, problems),
    )


def _pip_layers(file: Path, spec: StackSpec, problems: list[Problem]) -> tuple[str, ...]:
    """The stack's pip_layers, normalised as the lock's names are (that each names a package
    of the lock is checked where the lock is known to be current: lock.settled_parts)."""
    patterns = tuple(str(canonicalize_name(p)) for p in spec.pip_layers)
    if patterns and not spec.pip:
        problems.append(Problem(file, "pip_layers", "the stack installs no pip packages of "
                                "its own to put in layers"))
        return ()
    for i, pattern in enumerate(patterns):
        if pattern in patterns[:i]:
            problems.append(Problem(file, f"pip_layers[{i}]", f"{pattern!r} is listed twice"))
    return patterns


def _root_runtime(file: Path, spec: StackSpec, problems: list[Problem]) -> Runtime | None:
    """The root stack's runtime: every field its own, none inherited."""
    missing = [f for f in _RUNTIME_FIELDS if getattr(spec, f) is None]
    for f in missing:
        problems.append(Problem(file, f, "the root stack (no 'extends') must set it"))
    if missing:
        return None
    assert spec.type is not None and spec.port is not None and spec.command is not None
    assert spec.entrypoint is not None and spec.user is not None and spec.uid is not None
    assert spec.gid is not None and spec.venv is not None
    return Runtime(
        type=spec.type, gpu=bool(spec.gpu), port=spec.port,
        entrypoint=tuple(spec.entrypoint), command=tuple(spec.command), user=spec.user,
        uid=spec.uid, gid=spec.gid, venv=spec.venv,
        healthcheck=spec.healthcheck or Healthcheck(),
    )


def _child_runtime(spec: StackSpec, pr: Runtime) -> Runtime:
    """The parent's runtime with what the child sets in its place."""
    return Runtime(
        type=spec.type or pr.type,
        gpu=pr.gpu if spec.gpu is None else spec.gpu,
        port=spec.port or pr.port,
        entrypoint=tuple(spec.entrypoint) if spec.entrypoint is not None else pr.entrypoint,
        command=tuple(spec.command) if spec.command is not None else pr.command,
        user=spec.user or pr.user,
        uid=spec.uid or pr.uid,
        gid=pr.gid if spec.gid is None else spec.gid,
        venv=spec.venv or pr.venv,
        healthcheck=spec.healthcheck or pr.healthcheck,
    )


@dataclass(frozen=True)
class _Inherited:
    """What a stack starts from: its parent's accumulated lists, or nothing for the root."""

    env: tuple[tuple[str, str], ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    checks: MergedChecks = field(default_factory=MergedChecks)
    version_tags: tuple[VersionTag, ...] = ()
    apt: tuple[str, ...] = ()
    pip: tuple[str, ...] = ()
    npm: tuple[str, ...] = ()
    pip_exclude: tuple[str, ...] = ()
    pip_prune: tuple[str, ...] = ()

    @classmethod
    def of(cls, parent: Stack) -> _Inherited:
        return cls(parent.env, parent.labels, parent.checks, parent.version_tags,
                   parent.apt_all, parent.pip_all, parent.npm_all, parent.pip_exclude_all,
                   parent.pip_prune_all)


def _extended(inherited: tuple[str, ...], own: list[str]) -> tuple[str, ...]:
    """The parent's list, then the child's additions it does not already hold."""
    return inherited + tuple(p for p in own if p not in inherited)


def _lock(file: Path, problems: list[Problem]) -> PipLock | None:
    try:
        return lockfile.parse(lockfile.beside(file))
    except ImagekitError as exc:
        problems.extend(exc.problems)
        return None


def resolve_profiles(specs: Specs, problems: list[Problem]) -> dict[str, Profile]:
    return {name: _profile(name, file, spec, specs.root, problems)
            for name, (file, spec) in specs.profiles.items()}


def resolve_site(specs: Specs, profiles: dict[str, Profile], problems: list[Problem]
                 ) -> tuple[tuple[Profile, ...], SiteSettings]:
    """The catalog's site profiles and the build settings they add up to."""
    site_profiles = _named_profiles(specs, profiles, specs.catalog.site_profiles,
                                    "site_profiles", ("site_profiles",), problems)
    site = _merge_site([p.site for p in site_profiles], specs.root)
    if site.pip_no_index and not site.find_links:
        owner = next(p.file for p in site_profiles if p.site.pip_no_index)
        problems.append(Problem(owner, "site.pip_no_index", "installing without an index "
                                "needs a wheelhouse: set site.find_links"))
    return site_profiles, site


def _named_profiles(specs: Specs, profiles: dict[str, Profile], names: list[str], field: str,
                    loc: Loc, problems: list[Problem]) -> tuple[Profile, ...]:
    """The profiles a list in the catalog file names; an unknown name is a problem."""
    found: list[Profile] = []
    for j, name in enumerate(names):
        if name in profiles:
            found.append(profiles[name])
        elif name not in specs.broken_profiles:
            problems.append(Problem(specs.file, f"{field}[{j}]", f"unknown profile {name!r}",
                                    specs.line_of((*loc, j)), did_you_mean(name, profiles)))
    return tuple(found)


# --- images: the catalog's list, then the parent images it stands on -----------------------------

def list_images(specs: Specs, stacks: dict[str, Stack], profiles: dict[str, Profile],
                site_profiles: tuple[Profile, ...], problems: list[Problem]
                ) -> list[tuple[int, Image]]:
    """The images the catalog lists, each with its index in `images:`; one with a problem
    is left out."""
    listed: list[tuple[int, Image]] = []
    for i, ispec in enumerate(specs.catalog.images):
        stack = stacks.get(ispec.stack)
        if stack is None:
            problems += _unknown_stack(specs, i, ispec)
            continue
        name = ispec.name or ispec.stack
        image_profiles = _named_profiles(specs, profiles, ispec.profiles,
                                         f"images[{i}].profiles", ("images", i, "profiles"),
                                         problems)
        problems += _site_settings_outside_site_profiles(specs, i, image_profiles,
                                                         site_profiles)
        problem = _image_problem(specs, i, ispec, name, [img.name for _, img in listed])
        if problem is not None:
            problems.append(problem)
            continue
        listed.append((i, _image(name, stack, site_profiles, image_profiles, specs.catalog,
                                 ispec.formats, ispec.tags, ispec.description, ispec.publish,
                                 ispec=ispec)))
    return listed


def _unknown_stack(specs: Specs, i: int, ispec: ImageSpec) -> list[Problem]:
    if ispec.stack in specs.stacks or ispec.stack in specs.broken_stacks:
        return []  # the stack's own problem is already reported
    return [Problem(specs.file, f"images[{i}].stack", f"unknown stack {ispec.stack!r}",
                    specs.line_of(("images", i, "stack")),
                    did_you_mean(ispec.stack, specs.stacks))]


def _site_settings_outside_site_profiles(specs: Specs, i: int, image_profiles: tuple[
        Profile, ...], site_profiles: tuple[Profile, ...]) -> list[Problem]:
    # Build settings reach every image or none: the root image carries the CA and the apt
    # sources that every child inherits.
    problems = []
    for p in image_profiles:
        given = sorted(p.site.model_dump(exclude_unset=True))
        if given and p not in site_profiles:
            problems.append(Problem(p.file, f"site.{given[0]}", "site settings apply "
                                    "to the whole catalog: list this profile under "
                                    f"site_profiles in {specs.file.name}, or move site: to a "
                                    f"profile that is (used by images[{i}])"))
    return problems


def _image_problem(specs: Specs, i: int, ispec: ImageSpec, name: str, taken: list[str]
                   ) -> Problem | None:
    """What is wrong with one entry of `images:` on its own (its stack being known)."""
    path, field, line = specs.file, f"images[{i}]", specs.line_of(("images", i))
    if ispec.profiles and name == ispec.stack:
        return Problem(path, f"{field}.name", "an image with profiles needs a name of its own",
                       line, f"e.g. {ispec.stack}-{ispec.profiles[0]}")
    if name != ispec.stack and name in specs.stacks:
        return Problem(path, f"{field}.name",
                       f"{name!r} is the name of stack {name!r}'s own image", line)
    if not ispec.profiles and name != ispec.stack:
        # It would be its stack's own image under another name: nothing would build it.
        return Problem(path, f"{field}.name",
                       f"{name!r} has no profiles: it would be the image of stack "
                       f"{ispec.stack!r}, which is named {ispec.stack!r}", line,
                       f"drop name: (`stack: {ispec.stack}` lists that image), or add the "
                       "profiles that make a variant of it")
    if name in taken:
        return Problem(path, f"{field}.name", f"duplicate image name {name!r}", line)
    if (ispec.consumers is not None and "batchspawner" in ispec.consumers
            and "sif" not in ispec.formats):
        return Problem(path, f"{field}.consumers",
                       "batchspawner runs SIFs: add sif to the image's formats",
                       specs.line_of(("images", i, "consumers")))
    platforms = specs.catalog.platforms
    unknown = [p for p in ispec.platforms or () if p not in platforms]
    if unknown:
        return Problem(path, f"{field}.platforms",
                       f"{unknown[0]} is not among the catalog's platforms "
                       f"({', '.join(platforms)}): an image can only narrow them",
                       specs.line_of(("images", i, "platforms")))
    return None


def add_parent_images(catalog: CatalogSpec, stacks: dict[str, Stack], listed: list[Image],
                      site_profiles: tuple[Profile, ...]) -> dict[str, Image]:
    """Every image to build, parents before children: every stack a listed image stands on
    gets an image of its own, listed or not, since children are FROM their parent's image
    so that builds share layers. The root image carries the site profiles' content (CA,
    env, files) for everyone."""
    by_name = {img.name: img for img in listed}
    needed = _stacks_under(listed, stacks)
    images: dict[str, Image] = {}
    for stack_name in _stack_order(stacks):
        if stack_name not in needed:
            continue
        stack_image: Image = by_name.get(stack_name) or _image(
            stack_name, stacks[stack_name], site_profiles, (), catalog, ["docker"], [], "",
            False, listed=False,
        )
        if stack_image.parent is None:
            stack_image = replace(
                stack_image, layers=tuple(p.layer for p in site_profiles) + stack_image.layers
            )
        images[stack_name] = stack_image
        for img in listed:
            if img.stack.name == stack_name and img.profiles:
                images[img.name] = img
    return images


def _stacks_under(images: list[Image], stacks: dict[str, Stack]) -> set[str]:
    """The images' stacks and all their ancestors."""
    needed: set[str] = set()
    for img in images:
        current: str | None = img.stack.name
        while current is not None:
            needed.add(current)
            current = stacks[current].parent
    return needed


# --- check: what holds only between images ----------------------------------------------------

def check_sif(specs: Specs, problems: list[Problem]) -> None:
    """The SIFs' compression level is one that compression has."""
    sif = specs.catalog.sif
    _, highest = SIF_LEVELS[sif.compression]
    if sif.level is not None and sif.level > highest:
        problems.append(Problem(specs.file, "sif.level",
                                f"{sif.level} is not a {sif.compression} level (1-{highest})",
                                specs.line_of(("sif", "level"))))


def check_layers(specs: Specs, problems: list[Problem]) -> None:
    """A level is zstd's: gzip layers are the engine's, compressed at its own level."""
    layers = specs.catalog.layers
    if layers.level is not None and layers.compression != "zstd":
        problems.append(Problem(specs.file, "layers.level",
                                "a level is for zstd layers: gzip layers are compressed by "
                                "the engine, at its own level",
                                specs.line_of(("layers", "level"))))


def check_platforms(specs: Specs, listed: list[tuple[int, Image]], images: dict[str, Image],
                    problems: list[Problem]) -> None:
    """A listed image is built only for platforms its parent image is built for."""
    for i, img in listed:
        parent = images.get(img.parent) if img.parent is not None else None
        missing = [p for p in img.platforms if parent is not None and p not in parent.platforms]
        if parent is not None and missing:
            problems.append(Problem(specs.file, f"images[{i}].platforms",
                                    f"image {img.name!r} is built FROM {parent.name!r}, which "
                                    f"is not built for {missing[0]}: narrow {img.name!r}'s "
                                    f"platforms, or widen {parent.name!r}'s",
                                    specs.line_of(("images", i))))


def resolve_defaults(specs: Specs, images: dict[str, Image], listed: list[Image],
                     problems: list[Problem]) -> dict[str, str]:
    """The default image per notebook type: a listed image of that type."""
    defaults: dict[str, str] = {}
    for ntype, image_name in specs.catalog.defaults.items():
        field, line = f"defaults.{ntype}", specs.line_of(("defaults", ntype))
        default = images.get(image_name)
        if default is None or not default.listed:
            problems.append(Problem(specs.file, field, f"unknown image {image_name!r}", line,
                                    did_you_mean(image_name, [img.name for img in listed])))
        elif default.runtime.type != ntype:
            problems.append(Problem(specs.file, field,
                                    f"image {image_name!r} is of type {default.runtime.type!r}",
                                    line))
        else:
            defaults[ntype] = image_name
    return defaults


def _catalog(specs: Specs, site: SiteSettings, site_profiles: tuple[Profile, ...],
             stacks: dict[str, Stack], profiles: dict[str, Profile], images: dict[str, Image],
             defaults: dict[str, str]) -> Catalog:
    spec = specs.catalog
    children: dict[str, list[str]] = {name: [] for name in images}
    for img in images.values():
        if img.parent is not None:
            children[img.parent].append(img.name)
    return Catalog(
        root=specs.root,
        file=specs.file,
        registry=spec.registry,
        namespace=spec.namespace,
        base=BaseSource(spec.base.image, spec.base.pull, spec.base.bootstrap,
                        spec.base.max_age_days),
        site=site,
        site_profiles=site_profiles,
        tags=tuple(spec.tags),
        stacks=stacks,
        profiles=profiles,
        images=images,
        defaults=defaults,
        source=spec.source,
        vendor=spec.vendor,
        children={k: tuple(v) for k, v in children.items()},
        insecure_registry=spec.insecure_registry,
        engine=spec.engine,
        sif_directory=spec.sif.directory,
        sif_compression=spec.sif.compression,
        sif_level=spec.sif.level,
        layer_compression=spec.layers.compression,
        layer_level=spec.layers.level,
        platforms=tuple(dict.fromkeys(spec.platforms)),
    )


def _image(name: str, stack: Stack, site_profiles: tuple[Profile, ...],
           profiles: tuple[Profile, ...], catalog: CatalogSpec, formats: list[Format],
           tags: list[str], description: str, publish: bool, listed: bool = True,
           ispec: ImageSpec | None = None) -> Image:
    checks = stack.checks
    env: dict[str, str] = {}
    for p in site_profiles:
        env.update(p.layer.env)
    env.update(stack.env)
    for p in (*site_profiles, *profiles):
        checks = checks.plus(p.checks)
    for p in profiles:
        env.update(p.layer.env)
    return Image(
        name=name,
        stack=stack,
        profiles=profiles,
        parent=stack.name if profiles else stack.parent,
        layers=tuple(p.layer for p in profiles) if profiles else (stack.layer,),
        formats=tuple(dict.fromkeys(formats)),
        tags=tuple(dict.fromkeys([*catalog.tags, *tags])),
        description=(description or stack.description).strip(),
        publish=publish,
        listed=listed,
        checks=checks,
        binds=tuple(dict.fromkeys(b for p in (*site_profiles, *profiles) for b in p.layer.binds)),
        env=tuple(env.items()),
        resources=_resources(stack, catalog, ispec),
        consumers=_consumers(formats, ispec),
        # The catalog's order, whatever order the image names its own in.
        platforms=tuple(p for p in dict.fromkeys(catalog.platforms)
                        if ispec is None or ispec.platforms is None or p in ispec.platforms),
    )


def _resources(stack: Stack, catalog: CatalogSpec, ispec: ImageSpec | None) -> Resources:
    """The image's own resources, else its type's, else 1 CPU and 2Gi (and 1 GPU if needed)."""
    mine = ispec.resources if ispec is not None else None
    typed = catalog.resources.get(stack.runtime.type)
    cpu = (mine and mine.cpu) or (typed and typed.cpu) or "1"
    memory = (mine and mine.memory) or (typed and typed.memory) or "2Gi"
    gpus = mine.gpus if mine is not None and mine.gpus is not None else None
    if gpus is None:
        gpus = 1 if stack.runtime.gpu else 0
    return Resources(str(cpu), str(memory), gpus)


_CONTAINER_CONSUMERS: tuple[Consumer, ...] = (
    "kubespawner", "dockerspawner", "kubeflow", "workspacekind", "setting", "armada")


def _consumers(formats: list[Format], ispec: ImageSpec | None) -> tuple[Consumer, ...]:
    if ispec is not None and ispec.consumers is not None:
        return tuple(dict.fromkeys(ispec.consumers))
    found: tuple[Consumer, ...] = _CONTAINER_CONSUMERS if "docker" in formats else ()
    return found + (("batchspawner",) if "sif" in formats else ())


def _merge_site(settings: list[SiteSettings], root: Path) -> SiteSettings:
    merged: dict[str, object] = {}
    for s in settings:
        merged.update(s.model_dump(exclude_unset=True, exclude_none=True))
    # Host paths are the catalog's, wherever imagekit runs from.
    for key in ("ca_bundle", "find_links"):
        value = merged.get(key)
        if isinstance(value, str) and not Path(value).is_absolute():
            merged[key] = str(root / value)
    return SiteSettings.model_validate(merged)
