"""Checks that need no server: imports, commands with expected output, kernelspecs.

They run in one idle container of the image (as its own user), one `exec` per check.
"""

from __future__ import annotations

import json
import shlex

from imagekit.checks import CheckFailed
from imagekit.checks.container import LABEL
from imagekit.checks.contract import Target


def run_static(t: Target) -> None:
    container = t.engine.start(
        t.ref, ["-c", "sleep 3600"], entrypoint=["/bin/bash"], network="none",
        labels={LABEL: "1"}, environment=t.env,
    )
    try:
        def sh(command: str) -> tuple[int, str]:
            return container.exec(command)

        checks = t.image.checks
        if checks.imports:
            def imports() -> str:
                code, out = sh("python3 -c " + shlex.quote("import " + ", ".join(checks.imports)))
                if code != 0:
                    raise CheckFailed(out.strip()[-500:])
                return "imported " + ", ".join(checks.imports)
            t.record("python imports", imports)
        for command in checks.commands:
            def run(command: str = command.run, expect: str = command.expect) -> str:
                code, out = sh(command)
                if code != 0:
                    raise CheckFailed(f"exit {code}: {out.strip()[-300:]}")
                if expect not in out:
                    raise CheckFailed(f"output lacks {expect!r}: {out.strip()[-300:]}")
                return out.strip().splitlines()[0][:120] if out.strip() else "(no output)"
            t.record(f"$ {command.run}", run)
        if checks.kernels:
            def kernels() -> str:
                code, out = sh("jupyter kernelspec list --json")
                if code != 0:
                    raise CheckFailed(out[-300:])
                found = set(json.loads(out)["kernelspecs"])
                missing = set(checks.kernels) - found
                if missing:
                    raise CheckFailed(f"missing {sorted(missing)}; registered {sorted(found)}")
                return "registered: " + ", ".join(sorted(found))
            t.record("kernels registered", kernels)
    finally:
        container.remove()
