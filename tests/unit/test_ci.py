"""`imagekit plan` and `imagekit ci github`: what CI is handed, derived from the tree.

The workflow is checked the way GitHub and a reviewer would check it: against GitHub's own
workflow schema (check-jsonschema's vendored copy, offline), audited by zizmor (offline),
and read as a graph: every `needs:` names a job that exists and follows the stack tree.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

Cli = Callable[..., tuple[int, str]]
ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github/workflows/imagekit.yml"


def _plan(cli: Cli, project: Path) -> dict[str, Any]:
    code, output = cli("plan", "--json", "-c", str(project / "catalog.yaml"))
    assert code == 0, output
    plan: dict[str, Any] = json.loads(output)
    return plan


def _changed(cli: Cli, project: Path, *paths: str) -> list[str]:
    args = [a for p in paths for a in ("--changed", p)]
    code, output = cli("plan", *args, "-c", str(project / "catalog.yaml"))
    assert code == 0, output
    return output.split()


def _tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        pytest.fail(f"{name} is not installed: pip install -e '.[test]'")
    return found


# -- the plan --

def test_the_plan_follows_the_tree_parents_first(cli: Cli, project: Path) -> None:
    plan = _plan(cli, project)
    names = [i["name"] for i in plan["images"]]
    by_name = {i["name"]: i for i in plan["images"]}
    for image in plan["images"]:
        if image["parent"] is None:
            assert image["level"] == 0 and image["from"] == plan["base"]
        else:
            parent = by_name[image["parent"]]
            assert names.index(parent["name"]) < names.index(image["name"])
            assert image["level"] == parent["level"] + 1
            assert image["name"] in parent["children"]
            assert image["from"] == parent["ref"]
    assert plan["waves"][0] == ["base"]
    assert sorted(n for wave in plan["waves"] for n in wave) == sorted(names)
    assert by_name["scipy-hpc"]["formats"] == ["docker", "sif"]
    assert by_name["pytorch-cuda"]["gpu"] is True


def test_tree_keys_are_stable_and_follow_every_input(cli: Cli, project: Path) -> None:
    before = {i["name"]: i for i in _plan(cli, project)["images"]}
    assert {i["name"]: i["key"] for i in _plan(cli, project)["images"]} == {
        n: i["key"] for n, i in before.items()}
    for image in before.values():
        assert image["tag"] == "tree-" + image["key"][:32]
        assert image["inputs"]["parent"] == (
            before[image["parent"]]["key"] if image["parent"] else before["base"]["from"])
    # A package added to scipy changes scipy's key and, through it, its children's only.
    stack = project / "stacks/scipy.yaml"
    spec = yaml.safe_load(stack.read_text())
    spec["labels"] = {**spec.get("labels", {}), "org.example.note": "changed"}
    stack.write_text(yaml.safe_dump(spec, sort_keys=False))
    after = {i["name"]: i["key"] for i in _plan(cli, project)["images"]}
    changed = {n for n in after if after[n] != before[n]["key"]}
    assert changed == {"scipy", "scipy-hpc", "scipy-kubeflow", "pyspark", "pytorch",
                       "pytorch-cuda"}


def test_changed_files_name_the_images_they_rebuild(cli: Cli, project: Path) -> None:
    scipy_tree = ["scipy", "scipy-hpc", "scipy-kubeflow", "pyspark", "pytorch",
                  "pytorch-cuda"]
    assert _changed(cli, project, "stacks/scipy.lock") == scipy_tree
    assert _changed(cli, project, "./profiles/kubeflow.yaml") == ["scipy-kubeflow"]
    assert _changed(cli, project, "stacks/r.yaml") == ["r"]
    assert _changed(cli, project, "README.md") == []
    everything = [i["name"] for i in _plan(cli, project)["images"]]
    assert _changed(cli, project, "catalog.yaml") == everything
    assert _changed(cli, project, "stacks/base.yaml") == everything
    # A file a stack copies into its image rebuilds that image and everything under it.
    files = [p for p in (project / "stacks/files/base").iterdir() if p.is_file()]
    assert _changed(cli, project, f"stacks/files/base/{files[0].name}") == everything


# -- the GitHub workflow --

def test_the_committed_workflow_matches_the_tree(cli: Cli) -> None:
    code, output = cli("ci", "github", "--check", "-c", str(ROOT / "catalog.yaml"))
    assert code == 0, output


def test_a_stale_workflow_fails_the_check_and_is_rewritten(cli: Cli, project: Path) -> None:
    catalog = str(project / "catalog.yaml")
    code, output = cli("ci", "github", "--check", "-c", catalog)
    assert code == 1 and "missing" in output
    assert cli("ci", "github", "-c", catalog)[0] == 0
    assert cli("ci", "github", "--check", "-c", catalog)[0] == 0
    # A new image in the catalog: the committed workflow no longer covers the tree.
    text = (project / "catalog.yaml").read_text()
    (project / "catalog.yaml").write_text(text.replace(
        "  - stack: pyspark\n", "  - stack: pyspark\n  - name: pyspark-hpc\n"
                                "    stack: pyspark\n    profiles: [slurm-host]\n"))
    code, output = cli("ci", "github", "--check", "-c", catalog)
    assert code == 1 and "stale" in output
    assert cli("ci", "github", "-c", catalog)[0] == 0
    jobs = yaml.safe_load((project / ".github/workflows/imagekit.yml").read_text())["jobs"]
    assert jobs["image-pyspark-hpc"]["needs"] == ["image-pyspark"]


def test_a_catalog_of_several_platforms_gets_no_workflow_its_runners_would_refuse(
        cli: Cli, project: Path) -> None:
    catalog = project / "catalog.yaml"
    catalog.write_text(catalog.read_text().replace(
        "\nplatforms: [linux/amd64]\n", "\nplatforms: [linux/amd64, linux/arm64]\n"))
    out = project / "workflow.yml"
    code, output = cli("ci", "github", "--output", str(out), "-c", str(catalog))
    assert code == 2 and not out.exists(), output
    assert "catalog.yaml" in output and "platforms" in output and "imagekit publish" in output


def test_every_need_names_a_job_and_follows_the_tree(cli: Cli) -> None:
    plan = _plan(cli, ROOT)
    document = yaml.safe_load(WORKFLOW.read_text())
    jobs: dict[str, Any] = document["jobs"]
    for need in (n for job in jobs.values() for n in job.get("needs", [])):
        assert need in jobs, need
    for image in plan["images"]:
        job, pr = jobs[f"image-{image['name']}"], jobs[f"pr-image-{image['name']}"]
        parent = image["parent"]
        assert job["needs"] == [f"image-{parent}" if parent else "plan"], image["name"]
        assert pr["needs"] == [f"pr-image-{parent}" if parent else "plan"], image["name"]
        # Each is skipped whole on the other's event.
        assert job["if"] == "github.event_name != 'pull_request'"
        assert pr["if"] == "github.event_name == 'pull_request'"
        for each in (job, pr):
            runs = [s["run"] for s in each["steps"] if "run" in s]
            assert any(r.startswith(f"imagekit build {image['name']} --from-registry")
                       for r in runs)
            assert f"imagekit test {image['name']}" in runs
        # Only the main branch pushes; a pull request hands parents over as artifacts.
        pushes = [s for s in job["steps"] if f"imagekit push {image['name']}\n" in s.get(
            "run", "")]
        assert len(pushes) == 1 and "pull_request" in pushes[0]["if"]
        assert not [s for s in pr["steps"] if "imagekit push" in s.get("run", "")]
        # The signing key reaches imagekit as a file, never on a command line.
        assert "${{" not in pushes[0]["run"] and "COSIGN_KEY_PEM" in pushes[0]["env"]
        uploads = [s for s in pr["steps"] if "upload-artifact" in s.get("uses", "")]
        assert bool(uploads) == bool(image["children"])
        downloads = [s for s in pr["steps"] if "download-artifact" in s.get("uses", "")]
        assert bool(downloads) == bool(parent)
    catalog = jobs["catalog"]
    assert sorted(catalog["needs"]) == sorted(f"image-{i['name']}" for i in plan["images"])
    assert any(s.get("run") == "imagekit publish --from-registry --all" for s in catalog["steps"])
    # A run fetches the actions of every step of the jobs it runs, whatever a step's `if:`:
    # the jobs a push runs use no action but checkout and setup-python (the artifact service
    # and the cosign installer are GitHub's alone). cosign itself is downloaded by a checked
    # digest, and only where the repository has a signing key.
    for name, job in jobs.items():
        if job.get("if") == "github.event_name == 'pull_request'":
            continue
        for step in job["steps"]:
            action = step.get("uses", "").partition("@")[0]
            assert action in ("", "actions/checkout", "actions/setup-python"), (name, step)
            if "cosign/releases" in step.get("run", ""):
                assert "sha256sum --check" in step["run"]
                assert step["if"].endswith("&& env.IMAGEKIT_SIGNS == 'true'")
                assert job["env"]["IMAGEKIT_SIGNS"] == \
                    "${{ secrets.IMAGEKIT_COSIGN_KEY != '' }}"


def _evaluate(value: object, context: dict[str, str]) -> bool:
    """A workflow boolean as GitHub evaluates it, for the forms this workflow uses: a
    literal, or `${{ NAME == 'TEXT' }}` and `!=`."""
    if isinstance(value, bool):
        return value
    found = re.fullmatch(r"\$\{\{\s*([\w.]+)\s*(==|!=)\s*'([^']*)'\s*\}\}", str(value))
    assert found is not None, f"not an expression this test reads: {value!r}"
    equal = context[found[1]] == found[3]
    return equal if found[2] == "==" else not equal


def test_a_publish_on_main_is_queued_never_cancelled() -> None:
    """A newer push to main waits for the publish that is moving tags; a pull request's
    older run is cancelled, since it publishes nothing."""
    concurrency = yaml.safe_load(WORKFLOW.read_text())["concurrency"]
    assert "${{ github.ref }}" in concurrency["group"]
    cancels = concurrency["cancel-in-progress"]
    assert not _evaluate(cancels, {"github.ref": "refs/heads/main"})
    assert _evaluate(cancels, {"github.ref": "refs/pull/7/merge"})


def test_the_workflow_is_valid_for_github(tmp_path: Path) -> None:
    result = subprocess.run([_tool("check-jsonschema"), "--builtin-schema",
                             "vendor.github-workflows", str(WORKFLOW)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    # The check can fail: a job without runs-on is refused.
    broken = yaml.safe_load(WORKFLOW.read_text())
    del broken["jobs"]["image-base"]["runs-on"]
    (tmp_path / "broken.yml").write_text(yaml.safe_dump(broken))
    refused = subprocess.run([_tool("check-jsonschema"), "--builtin-schema",
                              "vendor.github-workflows", str(tmp_path / "broken.yml")],
                             capture_output=True, text=True)
    assert refused.returncode == 1, refused.stdout


def test_zizmor_finds_nothing_in_the_workflow(tmp_path: Path) -> None:
    argv = [_tool("zizmor"), "--offline", "--persona", "pedantic", "--format", "json"]
    result = subprocess.run([*argv, str(WORKFLOW)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout) == []
    # The audit can fail: a template expanded into a shell line is code injection.
    risky = WORKFLOW.read_text().replace(
        "run: imagekit test base", "run: imagekit test ${{ github.event.pull_request.title }}")
    (tmp_path / "risky.yml").write_text(risky)
    found = subprocess.run([*argv, str(tmp_path / "risky.yml")], capture_output=True,
                           text=True)
    assert found.returncode != 0
    assert any(f["ident"] == "template-injection" for f in json.loads(found.stdout))
