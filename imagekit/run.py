"""The one way imagekit runs other programs: logged, and failing with the tail of stderr."""

from __future__ import annotations

import logging
import shlex
import subprocess
from collections.abc import Mapping, Sequence

from imagekit.errors import BuildFailed

log = logging.getLogger("imagekit.run")


def tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def run(
    argv: Sequence[str],
    *,
    input: bytes | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[bytes]:
    log.debug("run: %s", shlex.join(argv))
    try:
        result = subprocess.run(
            list(argv), input=input, env=dict(env) if env is not None else None,
            capture_output=True, timeout=timeout, check=False,
        )
    except FileNotFoundError as exc:
        raise BuildFailed(f"{argv[0]}: not installed (run `imagekit doctor`)") from exc
    except subprocess.TimeoutExpired as exc:
        raise BuildFailed(f"{shlex.join(argv)}: timed out after {timeout} s") from exc
    if check and result.returncode != 0:
        stderr = result.stderr.decode(errors="replace") or result.stdout.decode(errors="replace")
        # Tools that print their usage after an error (siftool, cobra-style) would push the
        # one line that matters out of the tail.
        first = next((line.strip() for line in stderr.splitlines()
                      if line.lstrip().lower().startswith(("error", "fatal"))), "")
        raise BuildFailed(
            f"{shlex.join(argv)} failed with status {result.returncode}"
            f"{': ' + first if first else ''}:\n{tail(stderr)}"
        )
    return result
