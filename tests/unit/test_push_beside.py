"""The engine's push runs beside the SIF's upload (Registry.pushing_image): its result or its
error comes back to the caller, and leaving early stops it and removes the engine's tag.

The engine here is the unit fake with a push of its own; the real engines' pushes, stopped
by Ctrl-C in the middle of a publish, are tests/integration/test_publish.py's. Podman's push
runs on a terminal (_on_terminal), which is tested on a real process here."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from imagekit.engine.podman import _on_terminal
from imagekit.errors import BuildFailed
from imagekit.publish.registry import Registry
from imagekit.resolve import load_catalog
from tests.unit.fakes import FakeEngine

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "sha256:" + "c" * 64
REPOSITORY = "127.0.0.1:5055/imagekit/scipy"
REF = f"{REPOSITORY}:id-cccccccccccc"


class PushingEngine(FakeEngine):
    """A fake whose push waits to be told how to end: when `stop` is set (it says so) or
    `finish` (it fails or succeeds, as `error` says)."""

    def __init__(self, error: str = "") -> None:
        super().__init__()
        self.started = threading.Event()
        self.finish = threading.Event()
        self.stopped = threading.Event()
        self.error = error
        self.pushed_ref = ""

    def layer_diff_ids(self, image: str) -> list[str]:
        return []

    def push(self, ref: str, auth: dict[str, str] | None,
             stop: threading.Event | None = None) -> set[str]:
        assert stop is not None
        self.pushed_ref = ref
        self.started.set()
        while not self.finish.is_set():
            if stop.is_set():
                self.stopped.set()
                raise BuildFailed(f"pushing {ref}: stopped")
            time.sleep(0.01)
        if self.error:
            raise BuildFailed(self.error)
        return set()


@pytest.fixture
def registry() -> Registry:
    return Registry(load_catalog(ROOT / "catalog.yaml"))


def test_leaving_early_stops_the_push_and_removes_the_tag(registry: Registry) -> None:
    engine = PushingEngine()
    engine.add(IMAGE)
    with pytest.raises(RuntimeError, match="the SIF's upload failed"), \
            registry.pushing_image(engine, IMAGE, REPOSITORY, "id-cccccccccccc", []):
        assert engine.started.wait(5)
        assert engine.refs[REF] == IMAGE  # tagged by ID for the push
        raise RuntimeError("the SIF's upload failed")
    assert engine.stopped.is_set()
    assert REF not in engine.refs
    assert engine.pushed_ref == REF


def test_the_engines_failure_is_the_callers(registry: Registry) -> None:
    engine = PushingEngine(error="pushing x failed: denied: requested access is refused")
    engine.add(IMAGE)
    with pytest.raises(BuildFailed, match="denied"), \
            registry.pushing_image(engine, IMAGE, REPOSITORY, "id-cccccccccccc",
                                   []) as pushed:
        engine.finish.set()
        pushed()
    assert not engine.stopped.is_set()
    assert REF not in engine.refs


def test_a_command_on_a_terminal_ends_when_stopped() -> None:
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    started = time.monotonic()
    with pytest.raises(BuildFailed, match="stopped"):
        _on_terminal(["sleep", "60"], timeout=120, stop=stop)
    assert time.monotonic() - started < 5


def test_a_command_on_a_terminal_runs_to_its_end_unless_stopped() -> None:
    status, output = _on_terminal(["sh", "-c", "echo pushed; exit 3"], timeout=30,
                                  stop=threading.Event())
    assert (status, output.strip()) == (3, "pushed")
