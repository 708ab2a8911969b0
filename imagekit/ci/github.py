"""`imagekit ci github`: a GitHub Actions workflow derived from the build plan.

One job per image, `needs:` its parent's job, so that the runners fan out the way the stack
tree allows. Each job gets its parent without building it (`imagekit build --from-registry`):
on the main branch from the registry, by the digest of the parent's tree tag; on a pull
request, which pushes nothing, from the parent job's `docker save` artifact. It builds,
tests, converts its SIF when the image has one, and on the main branch pushes the image, the
SIF and their records (`imagekit push`). The last job publishes the catalog and the exports
from what the registry holds (`imagekit publish --from-registry`), building nothing; the
catalog it publishes is the registry's (`NAMESPACE/catalog:latest`).

A pull request's image jobs are jobs of their own (`pr-image-*`), skipped whole on a push as
the main branch's are on a pull request: a runner fetches the actions of every step of a job
it runs, whatever the step's `if:`, so the main branch's path uses no action but checkout and
setup-python, and nothing that only GitHub serves but the runner itself (cosign is
downloaded, by a checked digest, only where the repository has a signing key).

The file is written, never kept by hand: `imagekit ci github --check` fails when it no
longer matches the tree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from imagekit import __version__
from imagekit.ci.plan import Plan, PlannedImage, make_plan
from imagekit.errors import BuildFailed
from imagekit.files import write_atomically
from imagekit.model import Catalog
from imagekit.said import Said

WORKFLOW = Path(".github/workflows/imagekit.yml")
RUNNER = "ubuntu-24.04"
PYTHON = "3.11"
# Actions pinned by commit (a moved tag must not change what runs), the release in a comment.
CHECKOUT = "actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683"  # v4.2.2
SETUP_PYTHON = "actions/setup-python@a26af69be951a213d495a4c3e4e4022e16d87065"  # v5.6.0
UPLOAD = "actions/upload-artifact@ea165f8d65b6e75b540449e92b4886f43607fa02"  # v4.6.2
DOWNLOAD = "actions/download-artifact@d3f86a106a0bac45b974a628896c90dbdf5c8093"  # v4.3.0
RELEASES = {CHECKOUT: "v4.2.2", SETUP_PYTHON: "v5.6.0", UPLOAD: "v4.6.2", DOWNLOAD: "v4.3.0"}
# cosign itself, where the repository signs: its release binary, checked against the digest
# sigstore/cosign-installer v3.10.0 pins for it (an action would be fetched from GitHub on
# every run, signing or not).
COSIGN_RELEASE = "v2.6.0"
COSIGN_SHA256 = "ea5c65f99425d6cfbb5c4b5de5dac035f14d09131c1a0ea7c7fc32eab39364f9"
COSIGN_INSTALL = f"""\
mkdir -p "$RUNNER_TEMP/cosign"
curl -fsSL --retry 3 -o "$RUNNER_TEMP/cosign/cosign" \\
  https://github.com/sigstore/cosign/releases/download/{COSIGN_RELEASE}/cosign-linux-amd64
echo "{COSIGN_SHA256}  $RUNNER_TEMP/cosign/cosign" | sha256sum --check --strict
chmod 0755 "$RUNNER_TEMP/cosign/cosign"
echo "$RUNNER_TEMP/cosign" >> "$GITHUB_PATH"
"""
# The site's cosign key, when the repository has one as a secret: written to a file only
# the job's user reads, named to imagekit by path (never on a command line).
SIGNING = """\
if [ -n "$COSIGN_KEY_PEM" ]; then
  umask 077 && printf '%s\\n' "$COSIGN_KEY_PEM" > "$RUNNER_TEMP/cosign.key"
  export IMAGEKIT_COSIGN_KEY="$RUNNER_TEMP/cosign.key"
fi
"""
ON_MAIN = "github.event_name != 'pull_request' && github.ref == 'refs/heads/main'"
ON_PR = "github.event_name == 'pull_request'"
NOT_PR = "github.event_name != 'pull_request'"
HEADER = """\
# Written by `imagekit ci github` from the stack tree ({images} images in {waves} waves):
# do not edit. `imagekit ci github --check` fails when it no longer matches the tree.
# Secrets: IMAGEKIT_REGISTRY_USERNAME and IMAGEKIT_REGISTRY_PASSWORD (the registry);
# on the main branch, IMAGEKIT_COSIGN_KEY and IMAGEKIT_COSIGN_PASSWORD sign the images.
"""


class _Dumper(yaml.SafeDumper):
    """Multi-line shell steps as literal blocks, the way people write them."""


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)


def job_id(image: str) -> str:
    return f"image-{image.replace('.', '-')}"


def pr_job_id(image: str) -> str:
    return f"pr-{job_id(image)}"


def install_command(root: Path) -> str:
    """imagekit itself: from the checkout when the catalog lives in imagekit's own source
    tree, else the release this workflow was written by."""
    pyproject = root / "pyproject.toml"
    if pyproject.is_file() and 'name = "imagekit"' in pyproject.read_text():
        return "python -m pip install ."
    return f"python -m pip install 'imagekit=={__version__}'"


def _setup(install: str) -> list[dict[str, Any]]:
    return [
        {"uses": CHECKOUT, "with": {"persist-credentials": False}},
        {"uses": SETUP_PYTHON, "with": {"python-version": PYTHON}},
        {"name": "Install imagekit", "run": install},
    ]


def _image_job(plan: Plan, image: PlannedImage, install: str, *,
               pull_request: bool) -> dict[str, Any]:
    """An image's job on the main branch (pushes it under its tree tag) or on a pull request
    (pushes nothing: its parent comes from the parent's job as an artifact). The two are
    separate jobs, each skipped whole on the other event, so that the main branch's runs
    never fetch the artifact actions."""
    sif = "sif" in image.formats
    formats = " ".join(f"--format {f}" for f in image.formats)
    archive = f"$RUNNER_TEMP/parent/{image.parent}.tar"  # no template in a shell line
    steps: list[dict[str, Any]] = _setup(install)
    if sif:
        steps.append({"name": "Install squashfs-tools (the SIF's file system)",
                      "run": "sudo apt-get update && sudo apt-get install -y squashfs-tools"})
    if image.parent is None and plan.bootstrap:
        steps.append({"name": f"Base image {plan.base} (pulled, or bootstrapped with "
                              "debootstrap)",
                      "run": "sudo apt-get update && sudo apt-get install -y debootstrap "
                             '&& sudo --preserve-env "$(command -v imagekit)" base'})
    if image.parent is not None and pull_request:
        steps += [
            {"name": f"Parent {image.parent} from its job", "uses": DOWNLOAD,
             "with": {"name": f"image-{image.parent}",
                      "path": "${{ runner.temp }}/parent"}},
            {"name": f"Load {image.parent}", "run": f'docker load --input "{archive}"'},
        ]
    steps += [
        {"name": f"Build {image.name} (its parent pulled or loaded, never rebuilt)",
         "run": f"imagekit build {image.name} --from-registry {formats} --plain",
         "env": _credentials()},
        {"name": f"Test {image.name}", "run": f"imagekit test {image.name}"},
    ]
    if image.children and pull_request:
        steps += [
            {"name": f"Hand {image.name} to its children's jobs",
             "run": f'docker save --output "$RUNNER_TEMP/{image.name}.tar" {image.ref}'},
            {"uses": UPLOAD,
             "with": {"name": f"image-{image.name}",
                      "path": f"${{{{ runner.temp }}}}/{image.name}.tar",
                      "retention-days": 1, "compression-level": 0}},
        ]
    if not pull_request:
        steps += [
            {"name": f"Install cosign {COSIGN_RELEASE} (where the repository signs)",
             "if": f"{ON_MAIN} && env.IMAGEKIT_SIGNS == 'true'", "run": COSIGN_INSTALL},
            {"name": f"Push {image.name}" + (" and its SIF" if sif else "")
                     + " by digest, signed, with its SBOM and test record", "if": ON_MAIN,
             "run": f"{SIGNING}imagekit push {image.name}\n",
             "env": {**_credentials(), "COSIGN_KEY_PEM": "${{ secrets.IMAGEKIT_COSIGN_KEY }}",
                     "IMAGEKIT_COSIGN_PASSWORD": "${{ secrets.IMAGEKIT_COSIGN_PASSWORD }}"}},
        ]
    parent = image.parent and (pr_job_id(image.parent) if pull_request else job_id(image.parent))
    job: dict[str, Any] = {
        "name": f"{image.name} (pull request)" if pull_request else image.name,
        "needs": [parent or "plan"],
        "if": ON_PR if pull_request else NOT_PR,
        "runs-on": RUNNER,
        "timeout-minutes": 120,
        "permissions": {"contents": "read"},
    }
    if not pull_request:
        # Whether the repository has a signing key, as a step's `if:` can read it (secrets
        # are not in that context); the key itself reaches the push step alone.
        job["env"] = {"IMAGEKIT_SIGNS": "${{ secrets.IMAGEKIT_COSIGN_KEY != '' }}"}
    job["steps"] = steps
    return job


def _credentials() -> dict[str, str]:
    return {name: f"${{{{ secrets.{name} }}}}"
            for name in ("IMAGEKIT_REGISTRY_USERNAME", "IMAGEKIT_REGISTRY_PASSWORD")}


def workflow(plan: Plan, root: Path) -> str:
    install = install_command(root)
    built = plan.images
    jobs: dict[str, Any] = {
        "plan": {
            "name": "plan (the workflow matches the stack tree)",
            "runs-on": RUNNER,
            "timeout-minutes": 15,
            "permissions": {"contents": "read"},
            "steps": [*_setup(install),
                      {"name": "The workflow is current", "run": "imagekit ci github --check"},
                      {"name": "The plan", "run": "imagekit plan"}],
        },
    }
    for image in built:
        jobs[job_id(image.name)] = _image_job(plan, image, install, pull_request=False)
    for image in built:
        jobs[pr_job_id(image.name)] = _image_job(plan, image, install, pull_request=True)
    jobs["catalog"] = {
        "name": "publish the catalog and the exports",
        "if": ON_MAIN,
        "needs": [job_id(i.name) for i in built],
        "runs-on": RUNNER,
        "timeout-minutes": 30,
        "permissions": {"contents": "read"},
        "steps": [
            *_setup(install),
            {"name": "Publish what the registry holds for this commit (nothing is built)",
             "run": "imagekit publish --from-registry --all", "env": _credentials()},
        ],
    }
    document = {
        "name": "images",
        "on": {"push": {"branches": ["main"]}, "pull_request": {}, "workflow_dispatch": {}},
        "permissions": {},
        # A newer push to main queues behind a publish that is moving tags (never cancels
        # it halfway); a pull request's older run publishes nothing and is cancelled.
        "concurrency": {"group": "images-${{ github.ref }}",
                        "cancel-in-progress": "${{ github.ref != 'refs/heads/main' }}"},
        "jobs": jobs,
    }
    text = yaml.dump(document, Dumper=_Dumper, sort_keys=False, width=100,
                     default_flow_style=False)
    for action, release in RELEASES.items():
        text = text.replace(f"uses: {action}\n", f"uses: {action} # {release}\n")
    return HEADER.format(images=len(built), waves=len(plan.waves)) + text


def sync(catalog: Catalog, output: Path | None, check: bool) -> Said:
    """Write the workflow or, with `check`, compare it (a stale or missing one fails)."""
    catalog.one_platform("ci github")
    path = output if output is not None else catalog.root / WORKFLOW
    text = workflow(make_plan(catalog), catalog.root)
    if check and not (path.is_file() and path.read_text() == text):
        raise BuildFailed(f"{path} is {'stale' if path.is_file() else 'missing'}: run "
                          "`imagekit ci github` and commit it")
    if check:
        return Said([f"ok: {path} matches the stack tree"])
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, text.encode())
    return Said([f"wrote {path}"])
