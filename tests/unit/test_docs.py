r"""The documentation names only commands, options and files that exist.

`README.md` and every `docs/*.md` are read as a user reads them, and four things are checked:

Commands. Every `imagekit ...` command line, in a fenced code block or an inline code span,
must name a command of the real CLI (`imagekit.cli:app`, walked through Typer's click group),
subcommands included (`imagekit ci github`, `imagekit spawner batchspawner`), and every option
written after it (`--json`, `-o`) must be one of that command's options. A command line ends at
a shell separator (`&&`, `||`, `;`, a pipe `|`, a `#` comment); inside an inline span `\\|` is
the Markdown table's escape for "or" and does not end it. Square brackets (`[--json]`) are
notation and are dropped; options after a bare `--` belong to another program and are not
checked; a word in capitals in a command's place (`imagekit COMMAND`) is a placeholder.

Repository paths. A word in code (fenced or inline) is a repository path when its first
segment is an entry at the top of the repository (`stacks/scipy.yaml`, `imagekit/engine/`,
`.ci/run`, `docs/admin.md`, `Makefile`); it must exist, relative to the repository's root
whichever file names it. Not paths: words with `:` or `@` (image references, URLs), words
starting with `/`, `~`, `$` or `..` (the user's machine, or beside the checkout), and the
output folders made at run time (`dist/`, `artifacts/`, `build/`, `.imagekit/`), which are
not top-level entries of the repository. A segment that is a placeholder (`<image>`, `*`,
`...`, `…`, `{`, `$`, or a word in capitals without a dot such as `IMAGE`) ends the check:
only the part before it must exist (`recipes/<image>/Dockerfile` needs `recipes/`).

Make targets. Every `make TARGET` in code must be a target of the `Makefile`.

Links. Every relative Markdown link or image target (`[admin](docs/admin.md)`,
`![](site-index.png)`) must exist relative to the file it is written in; web addresses and
in-page anchors are not followed, and a `#fragment` is dropped.

`doc_problems(text, where)` returns the problems of one document as lines; the test over the
real documents expects none, and `test_the_checker_reports_*` show that it reports each kind.
The other direction is checked too: `docs/reference.md` has a heading for every command of the
CLI (`### \`imagekit ci github\``), and every long option of that command is named in its
section.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import typer.main

from imagekit.cli import app

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
REFERENCE = ROOT / "docs" / "reference.md"

# Folders a run writes into the checkout, and tools' caches: never repository paths.
# Options of (nearly) every command, which the reference describes once, at its top.
COMMON = {"--catalog"}
RUN_TIME = {"dist", "artifacts", "build", ".imagekit", ".git", ".venv", "__pycache__",
            ".pytest_cache", ".mypy_cache", ".ruff_cache", ".coverage"}

FENCE = re.compile(r"^ *(```|~~~)[^\n]*\n(.*?)^ *\1 *$", re.M | re.S)
INLINE = re.compile(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)", re.S)
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
# `imagekit` as a program name: not a part of a path, a module, a label or an image name.
PROGRAM = re.compile(r"(?<![\w./@:-])imagekit(?=[ \t]+\S)")
SEPARATOR = re.compile(r"&&|\|\||;|(?<!\\)\||\s#|`|\$\(|\)")
WORD = re.compile(r"[^\s()\[\]{}\"'`,;=|\\]+")
MAKE = re.compile(r"(?<![\w./-])make[ \t]+([a-z][\w-]*)")
PLACEHOLDER = re.compile(r"[<>*?{}$…]|\.\.\.|^[A-Z][A-Z0-9_-]*$")


@dataclass
class Command:
    """One command of the CLI: its options and, for a group, its subcommands."""

    options: set[str] = field(default_factory=set)
    long_options: list[str] = field(default_factory=list)
    subcommands: dict[str, Command] = field(default_factory=dict)


def _command(click_command: object) -> Command:
    # Typer vendors click (typer._click), so the walk reads attributes, not click's classes.
    command = Command(options={"--help"})
    for param in getattr(click_command, "params", []):
        if getattr(param, "param_type_name", "") != "option":
            continue
        names = [*getattr(param, "opts", []), *getattr(param, "secondary_opts", [])]
        command.options.update(names)
        command.long_options += [n for n in getattr(param, "opts", []) if n.startswith("--")]
    for name, sub in (getattr(click_command, "commands", None) or {}).items():
        command.subcommands[name] = _command(sub)
    return command


CLI = _command(typer.main.get_command(app))


def leaf_commands(command: Command = CLI, path: str = "imagekit") -> Iterator[tuple[str, Command]]:
    """Every command a user runs, by its whole name (`imagekit ci github`)."""
    if not command.subcommands:
        yield path, command
    for name, sub in command.subcommands.items():
        yield from leaf_commands(sub, f"{path} {name}")


def _make_targets() -> set[str]:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    return set(re.findall(r"^([\w-]+):", makefile, re.M))


def _top_level() -> set[str]:
    return {p.name for p in ROOT.iterdir()} - RUN_TIME


def _code(text: str) -> tuple[list[str], list[str]]:
    """The fenced blocks' logical lines (continuations joined) and the inline spans."""
    lines: list[str] = []
    for block in FENCE.finditer(text):
        lines += block.group(2).replace("\\\n", " ").splitlines()
    prose = FENCE.sub("", text)
    spans = [m.group(2) for m in INLINE.finditer(prose) if "\n\n" not in m.group(2)]
    return lines, [" ".join(s.split()) for s in spans]


def _words(command_line: str) -> list[str]:
    try:
        words = shlex.split(command_line, comments=False)
    except ValueError:  # an unbalanced quote in prose-like code: plain words will do
        words = command_line.split()
    return [w.strip("[]") for w in words if w.strip("[]")]


def command_problems(command_line: str) -> list[str]:
    """Problems of one `imagekit ...` command line (it starts with `imagekit`)."""
    words = _words(command_line)[1:]
    command, name = CLI, "imagekit"
    while command.subcommands and words and not words[0].startswith("-"):
        word = words.pop(0)
        if PLACEHOLDER.search(word):
            return []
        if word not in command.subcommands:
            return [f"`{name} {word}`: no such command (in `{command_line}`)"]
        command, name = command.subcommands[word], f"{name} {word}"
    problems = []
    for word in words:
        if word == "--":
            break
        option = word.split("=", 1)[0]
        if option.startswith("-") and len(option) > 1 and option not in command.options:
            problems.append(f"`{name}` has no option {option} (in `{command_line}`)")
    return problems


def _commands(code: str, inline: bool) -> Iterator[str]:
    for start in PROGRAM.finditer(code):
        rest = code[start.start():]
        if inline:  # `\|` is the table's "or": one command either way
            rest = rest.replace("\\|", " ")
        end = SEPARATOR.search(rest)
        yield (rest[: end.start()] if end else rest).strip()


def path_problems(word: str, top_level: set[str]) -> list[str]:
    """Problems of one word of code, if it is a repository path (see the module's rule)."""
    word = word.rstrip(".:")
    if not word or ":" in word or "@" in word or word.startswith(("/", "~", "$", "..")):
        return []
    segments = word.split("/")
    if segments[0] not in top_level:
        return []
    checked = ROOT
    for segment in segments:
        if PLACEHOLDER.search(segment):
            break
        if segment:
            checked = checked / segment
    if not checked.exists():
        return [f"`{word}`: no such file or folder in the repository"]
    return []


def link_problems(target: str, where: Path) -> list[str]:
    if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
        return []
    path = target.split("#", 1)[0]
    if not (where.parent / path).exists():
        return [f"link `{target}`: no such file relative to {where.name}"]
    return []


def doc_problems(text: str, where: Path) -> list[str]:
    """Every command, option, path and link of one Markdown text that does not exist."""
    top_level, targets = _top_level(), _make_targets()
    lines, spans = _code(text)
    problems: list[str] = []
    for code, inline in [*((line, False) for line in lines), *((s, True) for s in spans)]:
        for command_line in _commands(code, inline):
            problems += command_problems(command_line)
        problems += [f"`make {t}`: no such target in the Makefile"
                     for t in MAKE.findall(code) if t not in targets]
        for word in WORD.findall(code):
            problems += path_problems(word, top_level)
    for target in LINK.findall(FENCE.sub("", text)):
        problems += link_problems(target, where)
    return sorted(set(problems))


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_docs_name_only_what_exists(doc: Path) -> None:
    assert doc_problems(doc.read_text(encoding="utf-8"), doc) == []


def test_there_is_a_guide_for_each_reader() -> None:
    names = {p.name for p in DOCS}
    guides = ("admin.md", "consumers.md", "hpc-user.md", "ci.md", "reference.md", "development.md")
    assert set(guides) <= names
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 200
    for guide in guides:
        assert f"](docs/{guide})" in readme


@pytest.mark.parametrize("name,command", list(leaf_commands()), ids=lambda x: str(x)[9:])
def test_the_reference_names_every_command_and_option(name: str, command: Command) -> None:
    reference = REFERENCE.read_text(encoding="utf-8")
    heading = re.search(rf"^#+ `{name}`$", reference, re.M)
    assert heading, f"docs/reference.md has no heading `{name}`"
    section = reference[heading.end():]
    section = section[: next_heading.start()] if (
        next_heading := re.search(r"^#", section, re.M)) else section
    missing = [o for o in command.long_options
               if o not in COMMON and not re.search(rf"{o}(?![\w-])", section)]
    assert missing == [], f"{name}: options missing from its section of docs/reference.md"


BAD_DOC = """
Build it with `imagekit biuld scipy`, then list it:

```sh
imagekit list --jsn && imagekit ci gitlab --check
imagekit run-cmd scipy -- sbatch --version   # options after -- are sbatch's
make tset
```

The stack is `stacks/nonesuch.yaml`, the engine `imagekit/engine/nothing.py`; see
[the guide](docs/missing.md). Not checked: `dist/catalog.json`, `/tmp/x`, `~/.docker/config.json`,
`recipes/<image>/Dockerfile`, `127.0.0.1:5055/imagekit/base:latest`, [web](https://example.org).
"""


def test_the_checker_reports_each_kind_of_problem() -> None:
    problems = doc_problems(BAD_DOC, ROOT / "README.md")
    assert problems == sorted([
        "`imagekit biuld`: no such command (in `imagekit biuld scipy`)",
        "`imagekit list` has no option --jsn (in `imagekit list --jsn`)",
        "`imagekit ci gitlab`: no such command (in `imagekit ci gitlab --check`)",
        "`stacks/nonesuch.yaml`: no such file or folder in the repository",
        "`imagekit/engine/nothing.py`: no such file or folder in the repository",
        "link `docs/missing.md`: no such file relative to README.md",
        "`make tset`: no such target in the Makefile",
    ])


def test_the_checker_accepts_real_commands_and_paths() -> None:
    good = (
        "`imagekit ci github --check`, `imagekit spawner batchspawner scipy-hpc --ssh u@h`,\n"
        "`imagekit build IMAGE... \\| --all --format sif --sif-level 5`, `stacks/scipy.yaml`,\n"
        "`imagekit/engine/`, `.ci/run`, `imagekit tunnel scipy-hpc -o x.sbatch [--submit]`,\n"
        "`make check`, `make test-arm64`.\n"
    )
    assert doc_problems(good, ROOT / "README.md") == []
