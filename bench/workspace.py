"""A throwaway copy of the project's catalog under its own namespace, so that benchmarks
edit stacks, relock and rebuild without touching the project's images or files."""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import yaml

from bench.host import ROOT, docker, imagekit, remove_images
from imagekit.model import Catalog
from imagekit.resolve import load_catalog

# Stacks whose images cannot be built on this project's machines, and why (see the README).
UNBUILDABLE = {"rstudio": "RStudio Server's .deb comes from RSTUDIO_DEB_URL, unreachable here"}


class Workspace:
    def __init__(self, namespace: str = "bench", registry: str | None = None) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix=f"imagekit-{namespace}-"))
        for name in ("stacks", "profiles"):
            shutil.copytree(ROOT / name, self.dir / name)
        text = (ROOT / "catalog.yaml").read_text()
        self.catalog = self.dir / "catalog.yaml"
        text = text.replace("namespace: imagekit", f"namespace: {namespace}")
        if registry is not None:  # a registry of the bench's own (its dist/ is the copy's)
            text = re.sub(r"(?m)^registry: .*$", f"registry: {registry}", text)
        self.catalog.write_text(text)
        self.namespace = namespace

    def model(self) -> Catalog:
        return load_catalog(self.catalog)

    def buildable(self) -> list[str]:
        """Every image of the catalog that CI builds here, parents first."""
        catalog = self.model()
        return [i.name for i in catalog.images.values()
                if not any(a.stack.name in UNBUILDABLE for a in catalog.lineage(i.name))]

    def ref(self, image: str) -> str:
        return self.model().ref(image)

    def build(self, *images: str, fmt: str = "docker") -> list[dict[str, Any]]:
        result = imagekit(self.catalog, "build", *images, "--format", fmt, "--json")
        outcomes: list[dict[str, Any]] = json.loads(result.stdout)["images"]
        return outcomes

    def lock(self, *stacks: str) -> None:
        """`imagekit lock` of the named stacks, or of them all."""
        imagekit(self.catalog, "lock", *(stacks or ("--all",)))

    def edit_stack(self, stack: str, **changes: Any) -> None:
        """Change a stack's YAML (a copy: comments are not kept) and relock what it changes."""
        path = self.dir / "stacks" / f"{stack}.yaml"
        spec = yaml.safe_load(path.read_text())
        for key, value in changes.items():
            spec[key] = value(spec.get(key)) if callable(value) else value
        path.write_text(yaml.safe_dump(spec, sort_keys=False))

    def stack_pip(self, stack: str) -> list[str]:
        spec = yaml.safe_load((self.dir / "stacks" / f"{stack}.yaml").read_text())
        return list(spec.get("pip", []))

    def remove_images(self) -> None:
        # Every tag in the namespace: the catalog's, the version tags and the date tags.
        listed = docker("image", "ls", "--format", "{{.Repository}}:{{.Tag}}").split()
        remove_images(*(r for r in listed if f"/{self.namespace}/" in r))

    def close(self) -> None:
        self.remove_images()
        shutil.rmtree(self.dir, ignore_errors=True)
