"""The package manifest of a built image: Debian, Python, R and npm versions, read from
inside the image (as docker-stacks does), never from what the stack files asked for."""

from __future__ import annotations

import json

from imagekit.engine.client import Engine
from imagekit.errors import BuildFailed
from imagekit.published.catalog import Packages

_MARK = "@@imagekit-section "
# One throwaway container, no network; each section is optional except Debian's.
_SCRIPT = """
echo '{mark}debian'
dpkg-query -W -f='${{Package}}\\t${{Version}}\\n'
echo '{mark}pip'
if [ -x {venv}/bin/python ]; then
  {venv}/bin/python -c 'import importlib.metadata as m, json
print(json.dumps({{d.metadata["Name"]: d.version for d in m.distributions()}}))'
fi
echo '{mark}r'
if command -v Rscript >/dev/null; then
  Rscript -e 'p <- installed.packages()[, c("Package", "Version")]' \\
          -e 'write.table(p, sep = "\\t", quote = FALSE, row.names = FALSE, col.names = FALSE)'
fi
echo '{mark}npm'
if command -v npm >/dev/null; then npm ls -g --depth=0 --json 2>/dev/null || true; fi
"""


def read_packages(engine: Engine, image_id: str, venv: str) -> Packages:
    output = engine.output_of(image_id, _SCRIPT.format(mark=_MARK, venv=venv), timeout=300)
    sections: dict[str, list[str]] = {}
    current = ""
    for line in output.splitlines():
        if line.startswith(_MARK):
            current = line[len(_MARK):].strip()
            sections[current] = []
        elif current:
            sections[current].append(line)
    debian = _table(sections.get("debian", []))
    if not debian:
        raise BuildFailed(f"{image_id}: dpkg-query listed no Debian packages")
    return Packages(
        debian=debian,
        pip=_json_map(sections.get("pip", [])),
        r=_table(sections.get("r", [])),
        npm=_npm(sections.get("npm", [])),
    )


def _table(lines: list[str]) -> dict[str, str]:
    found = {}
    for line in lines:
        name, _, version = line.partition("\t")
        if name.strip() and version.strip():
            found[name.strip()] = version.strip()
    return dict(sorted(found.items()))


def _json_map(lines: list[str]) -> dict[str, str]:
    text = "\n".join(lines).strip()
    if not text:
        return {}
    data = json.loads(text)
    return {str(k).lower(): str(v) for k, v in sorted(data.items(), key=lambda i: i[0].lower())}


def _npm(lines: list[str]) -> dict[str, str]:
    text = "\n".join(lines).strip()
    if not text:
        return {}
    try:
        deps = json.loads(text).get("dependencies", {})
    except ValueError:
        return {}
    return {name: str(info.get("version", "")) for name, info in sorted(deps.items())}
