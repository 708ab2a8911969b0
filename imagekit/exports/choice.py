"""Which file `imagekit export` writes: the target's first, the one `--file` names, or
kube's manifests of one image; every wrong choice said before anything is read."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from imagekit.errors import ImagekitError, Problem, did_you_mean
from imagekit.exports import Exporter, ExportFile, batchspawner, exporters
from imagekit.files import writable, write_atomically
from imagekit.hpc import SshLogin
from imagekit.published.catalog import dist_of, read
from imagekit.said import Said


def export(target: str, image: str | None, file: str | None, published: Path | None,
           catalog_file: Path, ssh: str | None, ssh_config: Path | None,
           output: Path | None) -> Said:
    """`imagekit export`: one file of the target's export of the published catalog
    (default: dist/catalog.json beside the catalog file), printed or written to `output`."""
    source = published or dist_of(catalog_file) / "catalog.json"
    chosen = pick(exporter(target, image, ssh, ssh_config)(read(source)), target, image, file,
                  source)
    if output is None:
        return Said(text=chosen.text)
    write_atomically(writable(output), chosen.text)
    return Said([f"wrote {output}"])


def exporter(target: str, image: str | None, ssh: str | None,
             ssh_config: Path | None) -> Exporter:
    """The target's exporter, its options checked."""
    known = exporters()
    if target not in known:
        raise ImagekitError(Problem(None, "TARGET", f"unknown export {target!r}",
                                    hint=did_you_mean(target, known) or
                                    f"one of {', '.join(known)}"))
    login = SshLogin.from_options(ssh, ssh_config)
    if login is not None and target != "batchspawner":
        raise ImagekitError(Problem(None, "--ssh", f"applies to batchspawner, not {target}"))
    if (image is None) != (target != "kube"):
        raise ImagekitError(Problem(None, "IMAGE", "kube writes one image's manifests: "
                                    "name it (imagekit export kube scipy)" if image is None
                                    else f"only kube takes an image, not {target}"))
    return partial(batchspawner.export, ssh=login) if login is not None else known[target]


def pick(files: list[ExportFile], target: str, image: str | None, file: str | None,
         source: Path) -> ExportFile:
    """The one file to write of those the exporter gave."""
    chosen = files[0] if files else ExportFile(target, "")
    if image is not None:
        by_image = {f.name: f for f in files}
        if f"kube-{image}.yaml" not in by_image:
            published = [n.removeprefix("kube-").removesuffix(".yaml") for n in by_image]
            raise ImagekitError(Problem(source, "images", f"{image!r} is not published",
                                        hint=did_you_mean(image, published) or
                                        f"published: {', '.join(published)}"))
        chosen = by_image[f"kube-{image}.yaml"]
    if file is not None:
        by_name = {f.name: f for f in files}
        if file not in by_name:
            raise ImagekitError(Problem(None, "--file", f"{target} writes "
                                        f"{', '.join(by_name)}, not {file!r}"))
        chosen = by_name[file]
    return chosen
