"""What the engine raises when it refuses or fails an operation, so that no caller outside
imagekit.engine names the docker SDK's exception types."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import docker.errors
import requests

from imagekit.errors import BuildFailed, ImagekitError, one_line


class EngineError(Exception):
    """The engine's API refused or failed a request; the message is the engine's own."""


# Everything an engine operation can raise for the engine's sake: EngineError, and the SDK's
# errors that the older methods (images, tags, builds through the SDK) still let through.
# The CLI turns these into one line, exit status 1.
ENGINE_ERRORS = (EngineError, docker.errors.DockerException)
# ...and what an engine or a registry raises over HTTP: what fails one image's build, or a
# command, in one line instead of a traceback.
SERVICE_ERRORS = (*ENGINE_ERRORS, requests.RequestException)


@contextlib.contextmanager
def engine_errors() -> Iterator[None]:
    """Raise the SDK's errors inside as EngineError, with the same message."""
    try:
        yield
    except docker.errors.DockerException as exc:
        raise EngineError(str(exc) or type(exc).__name__) from exc


def as_failure(exc: BaseException) -> ImagekitError | None:
    """The error a person is told of: bad input as it is (exit status 2); what an engine, a
    registry or the machine caused as one line (exit status 1); None for anything else."""
    if isinstance(exc, ImagekitError):
        return exc
    if isinstance(exc, SERVICE_ERRORS):  # before OSError: requests' errors are OSErrors too
        return BuildFailed(f"the engine or a registry failed: {one_line(exc)}")
    if isinstance(exc, OSError) and not isinstance(exc, BrokenPipeError):  # `| head`: click's
        return BuildFailed(f"{f'{exc.filename}: ' if exc.filename else ''}{exc.strerror or exc}")
    return None
