"""YAML files -> validated specs, with file/field/line-aware problems.

This is the only module that reads YAML. It composes the YAML node tree itself so that every
value keeps the line it came from, rejects duplicate keys (PyYAML silently keeps the last),
and turns pydantic's errors into `Problem`s that name the file, field and line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from imagekit.errors import Problem, did_you_mean

SpecT = TypeVar("SpecT", bound=BaseModel)
Loc = tuple[str | int, ...]


# libyaml's loader where PyYAML was built with it (positions and messages are the same).
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Document:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines: dict[Loc, int] = {}
        self.problems: list[Problem] = []

    def build(self, node: yaml.Node, loc: Loc) -> Any:
        self.lines.setdefault(loc, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    self.problems.append(
                        Problem(self.path, _dotted(loc), "YAML merge keys ('<<:') are not "
                                "supported: write the keys out (stacks inherit through "
                                "'extends')", key_node.start_mark.line + 1))
                    continue
                key = self.build(key_node, loc)
                if not isinstance(key, str | int | float | bool):
                    self.problems.append(
                        Problem(self.path, _dotted(loc), "keys must be plain scalars",
                                key_node.start_mark.line + 1)
                    )
                    continue
                if key in out:
                    self.problems.append(
                        Problem(self.path, _dotted((*loc, str(key))), "duplicate key",
                                key_node.start_mark.line + 1)
                    )
                    continue
                self.lines[(*loc, str(key))] = key_node.start_mark.line + 1
                out[key] = self.build(value_node, (*loc, str(key)))
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*loc, i)) for i, item in enumerate(node.value)]
        try:
            # A constructor alone: a whole SafeLoader per scalar costs a reader and a scanner.
            return yaml.constructor.SafeConstructor().construct_object(node)
        except yaml.YAMLError as exc:  # an unknown tag (!!python/...), a bad timestamp...
            reason = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            self.problems.append(Problem(self.path, _dotted(loc), f"not valid here: {reason}",
                                         node.start_mark.line + 1))
            return None

    def line_of(self, loc: Loc) -> int | None:
        while loc:
            if loc in self.lines:
                return self.lines[loc]
            loc = loc[:-1]
        return self.lines.get(())


def _dotted(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def read_yaml(path: Path) -> tuple[Any, _Document]:
    doc = _Document(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        doc.problems.append(Problem(path, "", f"cannot read file: {exc.strerror}"))
        return None, doc
    except UnicodeDecodeError as exc:
        at = path.read_bytes()[: exc.start].count(b"\n") + 1
        doc.problems.append(Problem(path, "", f"not UTF-8 text (byte {exc.object[exc.start]:#x}"
                                    f" at offset {exc.start}): save the file as UTF-8", at))
        return None, doc
    try:
        node = yaml.compose(text, Loader=_LOADER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        reason = getattr(exc, "problem", None) or str(exc)
        doc.problems.append(Problem(path, "", f"not valid YAML: {reason}", line))
        return None, doc
    if node is None:
        doc.problems.append(Problem(path, "", "file is empty"))
        return None, doc
    return doc.build(node, ()), doc


def parse(path: Path, spec_type: type[SpecT]) -> tuple[SpecT | None, _Document, list[Problem]]:
    """Read one file into its spec; return the problems found instead of raising."""
    data, doc = read_yaml(path)
    problems = list(doc.problems)
    if problems:
        return None, doc, problems
    if not isinstance(data, dict):
        return None, doc, [Problem(path, "", "must be a mapping of keys to values", 1)]
    try:
        return spec_type.model_validate(data), doc, []
    except ValidationError as exc:
        for err in exc.errors():
            problems.append(_problem_from(err, path, doc, spec_type))
        return None, doc, problems


def _problem_from(
    err: Any, path: Path, doc: _Document, spec_type: type[BaseModel]
) -> Problem:
    loc: Loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and "[" in p))
    kind = err["type"]
    line = doc.line_of(loc)
    if kind == "extra_forbidden":
        key = str(loc[-1])
        known = _fields_at(spec_type, loc[:-1])
        return Problem(path, _dotted(loc), f"unknown key {key!r}", line,
                       did_you_mean(key, known) if known else None)
    if kind == "missing":
        return Problem(path, _dotted(loc), "required field is missing", line)
    message = str(err["msg"])
    if message.startswith("Value error, "):
        message = message[len("Value error, "):]
    elif "input" in err and kind not in ("missing",):
        message = f"{message} (got {err['input']!r})"
    return Problem(path, _dotted(loc), message, line)


def _fields_at(spec_type: type[BaseModel], loc: Loc) -> list[str]:
    """Field names of the (nested) model at `loc`, for 'did you mean' hints."""
    current: Any = spec_type
    for part in loc:
        if isinstance(part, int):
            continue
        fields = getattr(current, "model_fields", None)
        if fields is None or part not in fields:
            return []
        annotation = fields[part].annotation
        current = _model_in(annotation)
        if current is None:
            return []
    return list(getattr(current, "model_fields", {}))


def _model_in(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None
