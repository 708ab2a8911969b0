"""The CLI as a user drives it, on a private copy of the catalog."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import jsonschema
import pytest
import requests
import yaml
from rich.console import Console

from imagekit import schemas
from imagekit.engine import temporary
from imagekit.engine.errors import EngineError, as_failure
from imagekit.errors import ImagekitError
from imagekit.progress import TestDisplay

Cli = Callable[..., tuple[int, str]]
ROOT = Path(__file__).resolve().parents[2]


def test_validate_summarises(project: Path, cli: Cli) -> None:
    code, output = cli("validate", "-c", str(project / "catalog.yaml"))
    assert code == 0 and "8 stacks" in output


def test_render_all_then_check_is_clean(project: Path, cli: Cli) -> None:
    shutil.rmtree(project / "recipes")
    code, _ = cli("render", "--all", "-c", str(project / "catalog.yaml"))
    assert code == 0
    for name in ("base", "scipy", "pytorch", "pytorch-cuda", "r", "vscode", "rstudio",
                 "pyspark", "scipy-hpc"):
        assert (project / "recipes" / name / "Dockerfile").is_file()
        assert (project / "recipes" / name / "Singularity.def").is_file()
    assert (project / "recipes/base/files/stacks/base/start-notebook.sh").is_file()
    code, output = cli("render", "--check", "-c", str(project / "catalog.yaml"))
    assert code == 0, output


def test_render_is_byte_for_byte_repeatable(project: Path, cli: Cli) -> None:
    cli("render", "--all", "-c", str(project / "catalog.yaml"))
    first = {p: p.read_bytes() for p in (project / "recipes").rglob("*") if p.is_file()}
    cli("render", "--all", "-c", str(project / "catalog.yaml"))
    second = {p: p.read_bytes() for p in (project / "recipes").rglob("*") if p.is_file()}
    assert first == second


def test_check_fails_when_a_stack_changed(project: Path, cli: Cli) -> None:
    stack = project / "stacks/scipy.yaml"
    stack.write_text(stack.read_text().replace("description: The", "description: A"))
    code, output = cli("render", "--check", "-c", str(project / "catalog.yaml"))
    assert code == 1
    assert "recipes/scipy/Dockerfile: changed" in output
    assert "recipes/scipy/Singularity.def: changed" in output


def test_check_fails_on_leftover_recipes(project: Path, cli: Cli) -> None:
    (project / "recipes/ghost").mkdir()
    (project / "recipes/ghost/Dockerfile").write_text("FROM x\n")
    code, output = cli("render", "--check", "-c", str(project / "catalog.yaml"))
    assert code == 1 and "ghost" in output


def test_render_one_image(project: Path, cli: Cli) -> None:
    shutil.rmtree(project / "recipes")
    code, _ = cli("render", "scipy", "-c", str(project / "catalog.yaml"))
    assert code == 0
    assert sorted(p.name for p in (project / "recipes").iterdir()) == ["scipy"]


def test_render_unknown_image_suggests(project: Path, cli: Cli) -> None:
    code, output = cli("render", "scipi", "-c", str(project / "catalog.yaml"))
    assert code == 2 and "unknown image 'scipi'" in output and "did you mean scipy?" in output


def test_list_json_is_the_tree(cli: Cli) -> None:
    code, output = cli("list", "--json", "-c", str(ROOT / "catalog.yaml"))
    rows = {row["name"]: row for row in json.loads(output)}
    assert code == 0
    assert rows["pytorch-cuda"]["gpu"] is True and rows["pytorch-cuda"]["parent"] == "scipy"
    assert rows["vscode"]["type"] == "code-server"
    assert rows["scipy-hpc"]["formats"] == ["docker", "sif"]


def test_show_resolves_inheritance(cli: Cli) -> None:
    code, output = cli("show", "pytorch", "-c", str(ROOT / "catalog.yaml"))
    assert code == 0
    assert "base -> scipy -> pytorch" in output
    assert "torch==2.13.0+cpu" in output and "numpy" in output and "jupyterlab" in output


def test_published_schemas_are_current_and_accept_the_shipped_files() -> None:
    assert schemas.stale(ROOT / "schemas") == []
    kinds = {"catalog.schema.json": [ROOT / "catalog.yaml"],
             "stack.schema.json": sorted((ROOT / "stacks").glob("*.yaml")),
             "profile.schema.json": sorted((ROOT / "profiles").glob("*.yaml"))}
    for name, files in kinds.items():
        schema = json.loads((ROOT / "schemas" / name).read_text())
        for file in files:
            jsonschema.validate(yaml.safe_load(file.read_text()), schema)


def test_schema_rejects_unknown_keys() -> None:
    schema = json.loads((ROOT / "schemas/stack.schema.json").read_text())
    try:
        jsonschema.validate({"description": "x", "pipp": []}, schema)
    except jsonschema.ValidationError as exc:
        assert "pipp" in str(exc)
    else:
        raise AssertionError("unknown key accepted")


def test_committed_recipes_are_fresh(cli: Cli) -> None:
    code, output = cli("render", "--check", "-c", str(ROOT / "catalog.yaml"))
    assert code == 0, output


def test_a_changed_pip_list_makes_the_lock_stale_and_nothing_renders_from_it(
        project: Path, cli: Cli) -> None:
    catalog = str(project / "catalog.yaml")
    assert cli("lock", "--check", "-c", catalog) == (0, "ok: 7 locks match their stacks\n")
    stack = project / "stacks/scipy.yaml"
    stack.write_text(stack.read_text().replace("  - seaborn\n", "  - seaborn\n  - xarray\n"))
    code, output = cli("lock", "--check", "-c", catalog)
    assert code == 1
    assert f"{project}/stacks/scipy.lock: stale" in output
    # Its children install scipy's packages too; base's lock does not depend on scipy.
    assert "stacks/pytorch.lock: stale" in output and "base.lock" not in output
    before = (project / "recipes/scipy/Dockerfile").read_bytes()
    code, output = cli("render", "scipy", "-c", catalog)
    assert code == 2 and "run `imagekit lock scipy`" in output
    assert (project / "recipes/scipy/Dockerfile").read_bytes() == before


def test_a_missing_or_edited_lock_is_named(project: Path, cli: Cli) -> None:
    catalog = str(project / "catalog.yaml")
    (project / "stacks/pyspark.lock").unlink()
    code, output = cli("lock", "--check", "-c", catalog)
    assert code == 1 and "stacks/pyspark.lock: missing" in output
    base = project / "stacks/base.lock"
    base.write_text(base.read_text().replace("    --hash=sha256:", "    --hash=md5:", 1))
    code, output = cli("validate", "-c", catalog)
    assert code == 2 and "stacks/base.lock:" in output and "--hash=sha256:" in output
    assert "Traceback" not in output
    # A parent's re-lock makes its children stale: they were resolved against it.
    base.write_text(base.read_text().replace("--hash=md5:", "--hash=sha256:") + "\n")
    code, output = cli("lock", "--check", "-c", catalog)
    assert code == 1 and "stacks/scipy.lock: stale" in output
    assert "stacks/base.lock" not in output


def test_an_error_naming_brackets_is_said_as_written(cli: Cli) -> None:
    code, output = cli("show", "[/x]", "-c", str(ROOT / "catalog.yaml"))
    assert code == 2 and "unknown image '[/x]'" in output and "Traceback" not in output


def test_printed_command_lines_keep_their_colons(cli: Cli) -> None:
    code, output = cli("run-cmd", "scipy-hpc", "echo", "a:b:", "-c", str(ROOT / "catalog.yaml"))
    assert code == 0 and "echo a:b:" in output


def test_a_failure_of_the_machine_or_a_service_is_one_line_and_exit_1() -> None:
    bad_input = ImagekitError("x")
    assert as_failure(bad_input) is bad_input
    missing = as_failure(FileNotFoundError(2, "No such file or directory", "dist/x"))
    assert missing is not None and missing.exit_code == 1
    assert [str(p) for p in missing.problems] == ["dist/x: No such file or directory"]
    refused = as_failure(requests.ConnectionError("[Errno 111] Connection refused"))
    assert refused is not None and str(refused.problems[0]).startswith(
        "the engine or a registry failed: ")
    assert as_failure(EngineError("no such image")) is not None
    # The reader went away (`| head`), or a bug: not a user's failure, raised as it is.
    assert as_failure(BrokenPipeError()) is None and as_failure(KeyError("x")) is None


def test_an_interrupted_command_removes_what_it_made_and_exits_130(
        monkeypatch: pytest.MonkeyPatch) -> None:
    said: list[str] = []
    monkeypatch.setattr(temporary, "clean_up", lambda: 2)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with pytest.raises(SystemExit) as stop, temporary.removed_when_interrupted(said.append):
            raise temporary.Interrupted(signal.SIGTERM)
    finally:
        for number, handler in handlers.items():
            signal.signal(number, handler)
    assert stop.value.code == 130
    assert said == ["interrupted; removed 2 temporary containers and volumes"]


def test_table_cells_from_the_catalog_are_printed_as_written(project: Path, cli: Cli) -> None:
    stack = project / "stacks/scipy.yaml"
    stack.write_text(stack.read_text().replace(
        "description: The", "description: Uses dask[distributed] and [bold]x[/], the", 1))
    code, output = cli("show", "scipy", "-c", str(project / "catalog.yaml"))
    assert code == 0, output
    assert "Uses dask[distributed] and [bold]x[/], the" in output


def test_test_notes_keep_brackets() -> None:
    console = Console(record=True, width=200)
    shown = TestDisplay(console)
    shown.note("skip", "scipy [linux/arm64]", "not built ([/y])")
    shown.note("fail", "scipy [linux/arm64]", "not tested [x]")
    text = console.export_text()
    assert "SKIP scipy [linux/arm64]: not built ([/y])" in text
    assert "FAIL scipy [linux/arm64]: not tested [x]" in text


def test_a_build_does_not_load_the_publishing_side() -> None:
    # oras loads jsonschema, whose format checkers compile some forty grammars at import
    # (about 1.7 s here): a build that publishes nothing must not pay for them.
    # No engine answers (the build stops where it would first ask one): the unit suite
    # never talks to an engine, and what the command imported by then is what counts.
    env = {**os.environ, "DOCKER_HOST": "unix:///nonexistent/docker.sock",
           "CONTAINER_HOST": "unix:///nonexistent/podman.sock"}
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "imagekit", "build", "scipy", "--dry-run",
         "--catalog", str(ROOT / "catalog.yaml")], capture_output=True, text=True, env=env,
        check=False)
    assert done.returncode != 0 and "Traceback" not in done.stdout + done.stderr
    loaded = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()}
    assert "imagekit.build" in loaded
    assert not {"oras", "jsonschema", "imagekit.publish"} & loaded
