"""What the engine raises when it refuses or fails an operation, so that no caller outside
imagekit.engine names the docker SDK's exception types."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import docker.errors
import requests


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
