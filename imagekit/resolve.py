"""Specs -> the resolved model: inheritance, references, cycles, build order.

`load_catalog(path)` is the single entry point every command uses. It collects every problem
in every file before raising, so a user fixes a catalog in one pass.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

from imagekit import lock
from imagekit.errors import ImagekitError, Problem, did_you_mean
from imagekit.load import parse
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
    CatalogSpec,
    Consumer,
    Format,
    Healthcheck,
    ImageSpec,
    ProfileSpec,
    SiteSettings,
    StackSpec,
)
from imagekit.schema import (
    Layer as LayerSpec,
)

SpecT = TypeVar("SpecT", StackSpec, ProfileSpec)
_NAME_OK = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
_RUNTIME_FIELDS = ("type", "port", "command", "entrypoint", "user", "uid", "gid", "venv")


def load_catalog(path: Path) -> Catalog:
    problems: list[Problem] = []
    path = path.resolve()
    if not path.is_file():
        raise ImagekitError(Problem(path, "", "catalog file not found (use --catalog PATH)"))
    root = path.parent
    spec, doc, found = parse(path, CatalogSpec)
    problems += found
    broken: set[str] = set()  # files that exist but did not parse: already reported
    stack_specs = _read_dir(root / "stacks", StackSpec, problems, broken)
    broken_profiles: set[str] = set()
    profile_specs = _read_dir(root / "profiles", ProfileSpec, problems, broken_profiles)
    if spec is None:
        raise ImagekitError(problems)

    def at(field: str, *loc: str | int) -> int | None:
        return doc.line_of(tuple(loc) if loc else (field,))

    stacks = _resolve_stacks(stack_specs, root, problems, broken)
    profiles = {
        name: _profile(name, file, pspec, root, problems)
        for name, (file, pspec) in profile_specs.items()
    }

    def known_profile(name: str, field: str, line: int | None) -> Profile | None:
        if name in profiles:
            return profiles[name]
        if name in broken_profiles:
            return None
        problems.append(Problem(path, field, f"unknown profile {name!r}", line,
                                did_you_mean(name, profiles)))
        return None

    site_profiles = tuple(
        p for i, name in enumerate(spec.site_profiles)
        if (p := known_profile(name, f"site_profiles[{i}]", at("", "site_profiles", i)))
    )
    site = _merge_site([p.site for p in site_profiles], root)
    if site.pip_no_index and not site.find_links:
        owner = next(p.file for p in site_profiles if p.site.pip_no_index)
        problems.append(Problem(owner, "site.pip_no_index", "installing without an index "
                                "needs a wheelhouse: set site.find_links"))

    images: dict[str, Image] = {}
    listed: list[tuple[int, Image]] = []
    for i, ispec in enumerate(spec.images):
        field = f"images[{i}]"
        line = at("", "images", i)
        stack = stacks.get(ispec.stack)
        if stack is None:
            if ispec.stack in stack_specs or ispec.stack in broken:
                continue  # the stack's own problem is already reported
            problems.append(Problem(path, f"{field}.stack", f"unknown stack {ispec.stack!r}",
                                    at("", "images", i, "stack"),
                                    did_you_mean(ispec.stack, stack_specs)))
            continue
        name = ispec.name or ispec.stack
        image_profiles = tuple(
            p for j, pname in enumerate(ispec.profiles)
            if (p := known_profile(pname, f"{field}.profiles[{j}]",
                                   at("", "images", i, "profiles", j)))
        )
        for p in image_profiles:
            given = sorted(p.site.model_dump(exclude_unset=True))
            if given and p not in site_profiles:
                # Build settings reach every image or none: the root image carries the CA
                # and the apt sources that every child inherits.
                problems.append(Problem(p.file, f"site.{given[0]}", "site settings apply "
                                        "to the whole catalog: list this profile under "
                                        f"site_profiles in {path.name}, or move site: to a "
                                        f"profile that is (used by {field})"))
        if ispec.profiles and name == ispec.stack:
            problems.append(Problem(path, f"{field}.name",
                                    "an image with profiles needs a name of its own",
                                    line, f"e.g. {ispec.stack}-{ispec.profiles[0]}"))
            continue
        if name != ispec.stack and name in stack_specs:
            problems.append(Problem(path, f"{field}.name",
                                    f"{name!r} is the name of stack {name!r}'s own image",
                                    line))
            continue
        if name in images or any(img.name == name for _, img in listed):
            problems.append(Problem(path, f"{field}.name", f"duplicate image name {name!r}",
                                    line))
            continue
        if (ispec.consumers is not None and "batchspawner" in ispec.consumers
                and "sif" not in ispec.formats):
            problems.append(Problem(path, f"{field}.consumers",
                                    "batchspawner runs SIFs: add sif to the image's formats",
                                    at("", "images", i, "consumers")))
            continue
        unknown = [p for p in ispec.platforms or () if p not in spec.platforms]
        if unknown:
            problems.append(Problem(path, f"{field}.platforms",
                                    f"{unknown[0]} is not among the catalog's platforms "
                                    f"({', '.join(spec.platforms)}): an image can only narrow "
                                    "them", at("", "images", i, "platforms")))
            continue
        listed.append((i, _image(name, stack, site_profiles, image_profiles, spec,
                                 ispec.formats, ispec.tags, ispec.description, ispec.publish,
                                 ispec=ispec)))

    if problems:
        raise ImagekitError(problems)

    # Every stack an image stands on gets an image of its own, listed or not: children are
    # FROM their parent's image so that builds share layers.
    by_name = {img.name: img for _, img in listed}
    needed: set[str] = set()
    for _, img in listed:
        current: str | None = img.stack.name
        while current is not None:
            needed.add(current)
            current = stacks[current].parent
    for stack_name in _stack_order(stacks):
        if stack_name not in needed:
            continue
        stack_image: Image = by_name.get(stack_name) or _image(
            stack_name, stacks[stack_name], site_profiles, (), spec, ["docker"], [], "", False,
            listed=False,
        )
        if stack_image.parent is None:
            # The root image carries the site profiles' content (CA, env, files) for everyone.
            stack_image = replace(
                stack_image, layers=tuple(p.layer for p in site_profiles) + stack_image.layers
            )
        images[stack_name] = stack_image
        for _, img in listed:
            if img.stack.name == stack_name and img.profiles:
                images[img.name] = img

    for i, img in listed:
        parent = images.get(img.parent) if img.parent is not None else None
        missing = [p for p in img.platforms if parent is not None and p not in parent.platforms]
        if parent is not None and missing:
            problems.append(Problem(path, f"images[{i}].platforms",
                                    f"image {img.name!r} is built FROM {parent.name!r}, which "
                                    f"is not built for {missing[0]}: narrow {img.name!r}'s "
                                    f"platforms, or widen {parent.name!r}'s",
                                    at("", "images", i)))

    defaults: dict[str, str] = {}
    for ntype, image_name in spec.defaults.items():
        line = at("", "defaults", ntype)
        default = images.get(image_name)
        if default is None or not default.listed:
            problems.append(Problem(path, f"defaults.{ntype}", f"unknown image {image_name!r}",
                                    line, did_you_mean(image_name, by_name)))
        elif default.runtime.type != ntype:
            problems.append(Problem(path, f"defaults.{ntype}",
                                    f"image {image_name!r} is of type {default.runtime.type!r}",
                                    line))
        else:
            defaults[ntype] = image_name
    if problems:
        raise ImagekitError(problems)

    children: dict[str, list[str]] = {name: [] for name in images}
    for img in images.values():
        if img.parent is not None:
            children[img.parent].append(img.name)
    return Catalog(
        root=root,
        file=path,
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
        platforms=tuple(dict.fromkeys(spec.platforms)),
    )


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


def _resolve_stacks(specs: dict[str, tuple[Path, StackSpec]], root: Path,
                    problems: list[Problem], broken: set[str]) -> dict[str, Stack]:
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
        missing = [f for f in _RUNTIME_FIELDS if getattr(spec, f) is None]
        if missing:
            for f in missing:
                problems.append(Problem(file, f, "the root stack (no 'extends') must set it"))
            return None
        assert spec.type is not None and spec.port is not None and spec.command is not None
        assert spec.entrypoint is not None and spec.user is not None and spec.uid is not None
        assert spec.gid is not None and spec.venv is not None
        runtime = Runtime(
            type=spec.type, gpu=bool(spec.gpu), port=spec.port,
            entrypoint=tuple(spec.entrypoint), command=tuple(spec.command), user=spec.user,
            uid=spec.uid, gid=spec.gid, venv=spec.venv,
            healthcheck=spec.healthcheck or Healthcheck(),
        )
        env: dict[str, str] = {}
        labels: dict[str, str] = {}
        checks = MergedChecks()
        version_tags: dict[str, object] = {}
        apt: tuple[str, ...] = ()
        pip: tuple[str, ...] = ()
        npm: tuple[str, ...] = ()
        excluded: tuple[str, ...] = ()
        pruned: tuple[str, ...] = ()
    else:
        pr = parent.runtime
        runtime = Runtime(
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
        env = dict(parent.env)
        labels = dict(parent.labels)
        checks = parent.checks
        version_tags = {t.prefix: t for t in parent.version_tags}
        apt, pip, npm = parent.apt_all, parent.pip_all, parent.npm_all
        excluded = parent.pip_exclude_all
        pruned = parent.pip_prune_all
    env.update(spec.env)
    labels.update(spec.labels)
    for tag in spec.version_tags:
        version_tags[tag.prefix] = tag
    if not spec.description.strip():
        problems.append(Problem(file, "description", "every stack needs a description"))
        return None
    return Stack(
        name=name,
        file=file,
        description=spec.description.strip(),
        parent=parent.name if parent else None,
        layer=layer,
        runtime=runtime,
        env=tuple(env.items()),
        labels=tuple(labels.items()),
        checks=checks.plus(spec.checks),
        version_tags=tuple(version_tags.values()),  # type: ignore[arg-type]
        apt_all=apt + tuple(p for p in spec.apt if p not in apt),
        pip_all=pip + tuple(p for p in spec.pip if p not in pip),
        npm_all=npm + tuple(p for p in spec.npm if p not in npm),
        pip_exclude_all=excluded + tuple(p for p in spec.pip_exclude if p not in excluded),
        apt_exclude=tuple(spec.apt_exclude),
        pip_prune_all=pruned + tuple(p for p in spec.pip_prune if p not in pruned),
        lock=_lock(file, problems),
    )


def _lock(file: Path, problems: list[Problem]) -> PipLock | None:
    try:
        return lock.parse(file.with_suffix(lock.SUFFIX))
    except ImagekitError as exc:
        problems.extend(exc.problems)
        return None


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
