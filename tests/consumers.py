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

import celpy
import jsonschema
import yaml
from celpy.adapter import json_to_cel

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
    """What the API server refuses in a custom resource, in its order: the schema's defaults
    applied, then the schema (unknown fields included) and its CEL rules
    (`x-kubernetes-validations`; transition rules, which compare with `oldSelf`, apply to
    updates only). apiVersion, kind and metadata are the server's own, checked by the caller."""
    schema = crd_schema(name, version)
    document = defaulted(document, schema)
    errors = [f"{'.'.join(str(p) for p in error.absolute_path) or '(top)'}: {error.message}"
              for error in _validator(name, version).iter_errors(document)]
    return errors + cel_errors(document, schema)


def defaulted(value: Any, schema: dict[str, Any]) -> Any:
    """`value` with the structural schema's `default`s filled in where fields are absent."""
    if isinstance(value, dict):
        value = dict(value)
        properties = schema.get("properties", {})
        for key, sub in properties.items():
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
        for key, item in value.items():
            sub = properties.get(key) or schema.get("additionalProperties")
            if isinstance(sub, dict):
                value[key] = defaulted(item, sub)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        value = [defaulted(item, schema["items"]) for item in value]
    return value


def cel_errors(value: Any, schema: dict[str, Any], at: str = "") -> list[str]:
    """The failed CEL rules of a schema and its parts, each evaluated with `self` bound to
    its own part of the document, as the API server does (with cel-python)."""
    errors: list[str] = []
    for rule in schema.get("x-kubernetes-validations", []):
        if "oldSelf" in rule["rule"]:
            continue
        if not _cel(rule["rule"]).evaluate({"self": json_to_cel(value)}):
            errors.append(f"{at or '(top)'}: {rule.get('message') or rule['rule']}")
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        for key, item in value.items():
            sub = properties.get(key) or schema.get("additionalProperties")
            if isinstance(sub, dict):
                errors += cel_errors(item, sub, f"{at}.{key}" if at else key)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            errors += cel_errors(item, schema["items"], f"{at}[{index}]")
    return errors


@functools.cache
def _cel(rule: str) -> Any:
    environment = celpy.Environment()
    return environment.program(environment.compile(rule))


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
