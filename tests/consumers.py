"""The consumers' own schemas and code, at the commits `../shared/consumers/README.md` names.

They sit beside the project, never in it: a test reads them from there, and fails (never
skips) when they are missing.
"""

from __future__ import annotations

import copy
import functools
import importlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import yaml

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's: the CRDs are large
FOLDER = Path(__file__).resolve().parents[1].parent / "shared" / "consumers"


def path(name: str) -> Path:
    found = FOLDER / name
    assert found.exists(), f"{found}: the consumers' files are missing (../shared/consumers/)"
    return found


@functools.cache
def _crd(name: str) -> dict[str, Any]:
    crd: dict[str, Any] = yaml.load(path(name).read_text(), Loader=_LOADER)
    return crd


def crd_schema(name: str, version: str) -> dict[str, Any]:
    """The openAPIV3Schema of a CustomResourceDefinition's served version, from its file
    (Helm templates included: the CRD files of a chart have no template syntax in them)."""
    crd = _crd(name)
    assert crd["kind"] == "CustomResourceDefinition", name
    for entry in crd["spec"]["versions"]:
        if entry["name"] == version:
            schema: dict[str, Any] = entry["schema"]["openAPIV3Schema"]
            return schema
    raise AssertionError(f"{name}: no version {version}")


def _strict(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with unknown fields refused where the API server would drop them: an object
    that lists its properties and neither allows others nor preserves unknown fields
    (`kubectl apply --validate=strict` refuses them; a plain apply loses them silently)."""
    schema = copy.deepcopy(schema)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if ("properties" in node and "additionalProperties" not in node
                    and not node.get("x-kubernetes-preserve-unknown-fields")):
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return schema


@functools.cache
def _validator(name: str, version: str) -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(_strict(crd_schema(name, version)))


def crd_errors(document: dict[str, Any], name: str, version: str) -> list[str]:
    """What the CRD's schema refuses in a custom resource (apiVersion, kind and metadata
    are the API server's own, checked by the caller)."""
    validator = _validator(name, version)
    return [f"{'.'.join(str(p) for p in error.absolute_path) or '(top)'}: {error.message}"
            for error in validator.iter_errors(document)]


def crd_names(name: str) -> tuple[str, str, list[str]]:
    """(group, kind, served versions) of a CRD file."""
    spec = _crd(name)["spec"]
    return spec["group"], spec["names"]["kind"], [v["name"] for v in spec["versions"]
                                                  if v.get("served", True)]


TYPESCRIPT = Path("/var/cache/imagekit/typescript/node_modules/typescript")  # scripts/setup.sh


def typescript_method(file: str, name: str) -> str:
    """A class method's text as the consumer's source has it: from its first line to the
    closing brace at the same indentation."""
    lines = path(file).read_text().splitlines()
    for start, line in enumerate(lines):
        if line.lstrip().startswith(f"{name}(") and line.rstrip().endswith("{"):
            indent = line[:len(line) - len(line.lstrip())]
            end = lines.index(f"{indent}}}", start)
            return "\n".join(lines[start:end + 1])
    raise AssertionError(f"{file}: no method {name}")


def run_typescript_method(file: str, name: str, fields: dict[str, Any],
                          calls: list[list[Any]]) -> list[Any]:
    """Call a consumer's TypeScript method, verbatim, on an object with `fields`, once per
    argument list: TypeScript's own compiler strips the types and node runs it."""
    assert TYPESCRIPT.exists(), f"{TYPESCRIPT}: TypeScript's compiler is missing (make setup)"
    members = "\n".join(f"  {key} = {json.dumps(value)};" for key, value in fields.items())
    source = f"class Consumer {{\n{members}\n{typescript_method(file, name)}\n}}\n"
    program = (
        f"const ts = require({json.dumps(str(TYPESCRIPT))});\n"
        f"const js = ts.transpileModule({json.dumps(source)}, {{compilerOptions: "
        "{target: ts.ScriptTarget.ES2020}}).outputText;\n"
        "const Consumer = new Function(js + '\\nreturn Consumer;')();\n"
        "const object = new Consumer();\n"
        f"const calls = {json.dumps(calls)};\n"
        f"console.log(JSON.stringify(calls.map(args => object.{name}(...args))));\n")
    result = subprocess.run(["node", "-e", program], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    answers: list[Any] = json.loads(result.stdout)
    return answers


def module(name: str) -> Any:
    """A consumer's Python package that is not on PyPI (armada_jupyter), imported from the
    consumers' folder as its repository has it."""
    assert (FOLDER / name.split(".")[0]).is_dir(), f"{FOLDER / name}: missing"
    if str(FOLDER) not in sys.path:
        sys.path.append(str(FOLDER))
    return importlib.import_module(name)
