"""Given any value a stack may hold, the recipes keep their structure: a value is either
refused at validation, or rendered so that it cannot open a Singularity section, pass
apptainer a build argument, end a heredoc or start a Dockerfile instruction."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from imagekit.errors import ImagekitError
from imagekit.model import Catalog
from imagekit.render.docker import DockerRenderer
from imagekit.render.plan import combined_script, plan
from imagekit.render.singularity import SingularityRenderer
from imagekit.resolve import load_catalog

ROOT = Path(__file__).resolve().parents[2]


# --- apptainer's rules, as its definition parser applies them ---------------------------
# pkg/build/types/parser/deffile.go: the file is read line by line ("\n"; a trailing "\r"
# is dropped); a line whose first whitespace-separated word begins with "%" opens a section
# named by that word, wherever the word stands; before the first section, "Key: value"
# header lines and "#" comments; "{{ NAME }}" anywhere is a build argument.

def sections(deffile: str) -> list[str]:
    names = []
    for line in deffile.split("\n"):
        words = line.split()
        if words and words[0].startswith("%"):
            names.append(words[0][1:])
    return names


def build_args(deffile: str) -> list[str]:
    return re.findall(r"\{\{.*?\}\}", deffile, re.S)


def section_body(deffile: str, name: str) -> list[str]:
    lines = deffile.split("\n")
    start = next(i for i, line in enumerate(lines) if line.split()[:1] == [f"%{name}"])
    body = []
    for line in lines[start + 1:]:
        if line.split()[:1] and line.split()[0].startswith("%"):
            break
        body.append(line)
    return body


def heredoc_body(text: str, end: str) -> str:
    """What bash feeds a quoted `<<'END'` heredoc: every line up to the first that is END."""
    body: list[str] = []
    for line in text.split("\n"):
        if line == end:
            return "".join(f"{b}\n" for b in body)
        body.append(line)
    raise AssertionError(f"the heredoc never ends: no line {end!r}")


# --- Dockerfile instructions, as BuildKit's parser reads them ------------------------------

def instructions(dockerfile: str) -> list[str]:
    words, continued = [], False
    for line in dockerfile.split("\n"):
        if not continued and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if not continued:
            words.append(line.split()[0].upper())
        continued = line.rstrip().endswith("\\")
    return words


# --- a project with one stack whose values are generated ----------------------------------

@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("structure")
    for name in ("stacks", "profiles"):
        shutil.copytree(ROOT / name, root / name)
    text = (ROOT / "catalog.yaml").read_text()
    (root / "catalog.yaml").write_text(
        text.replace("  - stack: pyspark\n", "  - stack: pyspark\n  - stack: generated\n"))
    yield root


def load(project: Path, stack: dict[str, Any]) -> Catalog:
    (project / "stacks/generated.yaml").write_text(
        yaml.safe_dump({"extends": "base", **stack}, allow_unicode=True))
    return load_catalog(project / "catalog.yaml")


# Text that tends to hit every rule: section words, braces, terminators, quotes, shell.
PIECES = st.sampled_from([
    "%post", "%files", "%environment", "%runscript", "%", "%%", "{{", "}}", "{{ X }}", "{",
    "}", "IMAGEKIT_SETUP", "IMAGEKIT_POST", "EOF", "\\", "\"", "'", "`", "$", "$(id)", "#",
    "\t", " ", "  ", "\r", "echo", "printf '%s\\n' x", "RUN", "FROM", "LABEL", "ENV", ":",
    "=", "ü", "\u2028", "\x0b",
])
TEXT = st.lists(st.one_of(PIECES, st.text(max_size=6)), max_size=8).map("".join)
LINES = st.lists(st.tuples(st.sampled_from(["", " ", "    ", "\t"]), TEXT), min_size=1,
                 max_size=5).map(lambda lines: "\n".join(i + t for i, t in lines))


def _stack(description: str, env: str, label: str, setup: str, post: str, check: str
           ) -> dict[str, Any]:
    return {
        "description": description,
        "env": {"GENERATED": env},
        "labels": {"io.example.generated": label},
        "setup": [setup],
        "post": [post],
        "checks": {"commands": [{"run": check, "expect": check}]},
    }


NEUTRAL = _stack("neutral", "x", "x", "true", "true", "true")


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(description=TEXT, env=TEXT, label=TEXT, setup=LINES, post=LINES, check=TEXT)
@example(description="0", env="", label="", setup="{IMAGEKIT_SETUP", post="EOF", check="")
def test_a_value_is_refused_or_leaves_the_recipes_structure_alone(
        project: Path, description: str, env: str, label: str, setup: str, post: str,
        check: str) -> None:
    try:
        catalog = load(project, _stack(description, env, label, setup, post, check))
    except ImagekitError as exc:
        assert all(p.file is not None and p.field for p in exc.problems), exc
        return
    image = catalog.images["generated"]
    deffile = SingularityRenderer().render(catalog, image)["Singularity.def"]
    dockerfile = DockerRenderer().render(catalog, image)["Dockerfile"]
    neutral = load(project, NEUTRAL)
    expected_def = SingularityRenderer().render(neutral, neutral.images["generated"])
    expected_docker = DockerRenderer().render(neutral, neutral.images["generated"])

    assert sections(deffile) == sections(expected_def["Singularity.def"])
    assert build_args(deffile) == []
    assert instructions(dockerfile) == instructions(expected_docker["Dockerfile"])
    # The scripts reach bash unchanged, between their heredoc's two ends.
    post_body = "\n".join(section_body(deffile, "post")) + "\n"
    recipe = plan(catalog, image)
    for name, scripts in (("SETUP", recipe.setup), ("POST", recipe.post)):
        opening = f"    bash <<'IMAGEKIT_{name}'\n"
        assert post_body.count(opening) == 1
        assert heredoc_body(post_body.split(opening)[1], f"IMAGEKIT_{name}") == \
            combined_script(image.name, scripts)


# --- one case per class of hole, with the message a user sees ----------------------------

@pytest.mark.parametrize(("field", "stack", "says"), [
    ("setup[0]", {"setup": ["echo a\n    %post\necho b"]}, "starts a Singularity section"),
    ("post[0]", {"post": ["\t%environment"]}, "starts a Singularity section"),
    ("post[0]", {"post": ["cat <<'X'\nIMAGEKIT_POST\nX"]}, "would end the heredoc"),
    ("setup[0]", {"setup": ["echo x\r\n"]}, "carriage return"),
    ("env.GREETING", {"env": {"GREETING": "hi {{ USER }}"}}, "build argument"),
    ("labels.io.example.x", {"labels": {"io.example.x": "{{ v }}"}}, "build argument"),
    ("checks.commands[0].run", {"checks": {"commands": [{"run": "echo {{x}}"}]}},
     "build argument"),
    ("checks.execute[0].code",
     {"checks": {"execute": [{"kernel": "python3", "code": "print('{{')", "expect": "x"}]}},
     "build argument"),
    ("version_tags[0].run", {"version_tags": [{"prefix": "v", "run": "echo }}"}]},
     "build argument"),
    ("description", {"description": "Handy. " * 20 + "%post rm -rf /"}, "starts with '%'"),
    ("description", {"description": "uses {{ SECRET }}"}, "build argument"),
    ("env.BAD", {"env": {"BAD": "a\nRUN rm -rf /"}}, "may not contain"),
    ("labels.io.example.x", {"labels": {"io.example.x": "a\\"}}, "may not contain"),
])
def test_each_kind_of_hole_is_refused_with_the_file_and_field(
        project: Path, field: str, stack: dict[str, Any], says: str) -> None:
    with pytest.raises(ImagekitError) as info:
        load(project, stack)
    (problem,) = info.value.problems
    assert problem.file is not None and problem.file.name == "generated.yaml"
    assert problem.field == field, str(problem)
    assert says in str(problem)


def test_the_shipped_recipes_keep_apptainers_structure() -> None:
    for folder in sorted((ROOT / "recipes").iterdir()):
        deffile = (folder / "Singularity.def").read_text()
        assert build_args(deffile) == [], folder.name
        assert set(sections(deffile)) <= {"help", "labels", "files", "environment", "post",
                                          "runscript", "startscript", "test"}, folder.name
