"""Long setups that need nothing of the rest of the suite: beside it, or in place.

A test module may define `beside(folder: Path) -> T`: the part of its setup that owns its
own resources (its own project, namespace, engine, registry or Apptainer) and does its work
in processes it starts itself. When the session has collected, conftest queues the `beside`
of every selected module (after the sid root the SIF tests share); two run at a time, in the
modules' order, while the tests of the modules before them run (those modules go last).
They run at the lowest CPU priority (nice 19, which every process they start inherits: an
engine of their own, its builds and containers, Apptainer, debootstrap), so that they take
only the CPU the tests leave idle and never slow the tests down on a 2-core machine.

A setup whose work is done by the suite's own engine (its builds run in that dockerd, which no
priority of ours reaches) would only contend with the tests' builds: such a module defines
`prepare(folder: Path) -> T` instead, run in place when its fixture first asks for it.

Such a setup does not always wait for its fixture, though: once every setup beside the
suite has ended, the niced ones no longer take the second core, and the setups registered to
run in place start beside the tests, one at a time, at normal priority, in the modules'
order (`after_beside`). Whichever comes first, that worker or the module's fixture, runs it;
the other waits for it. A test that measures the machine's own traffic measures inside
`with quiet():`, which holds that worker back and waits for what runs beside; the worker
goes on when the measure ends.

Either way the module's fixture takes the result with `result(module)`, waiting for it if
it has not finished, and an exception raised there is raised again in the fixture, so the
module's tests fail (never skip) with it.
"""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BESIDE = "beside the suite"  # a Job's `where` when it was queued with start()


@dataclass
class Job:
    name: str
    folder: Path
    done: threading.Event = field(default_factory=threading.Event)
    value: Any = None
    error: BaseException | None = None
    started: float = field(default_factory=time.monotonic)
    seconds: float = 0.0
    work: Callable[[Path], Any] | None = None  # set: run in place, by the first result()
    where: str = BESIDE


@dataclass
class Parts:
    """A setup of independent parts: each part's result, or the error it raised, so that
    one part's failure fails only the tests that take that part. Each part's seconds go
    to the session's summary: a setup beside the suite never prints, since a unit test's
    CliRunner swaps sys.stdout for the whole process while it runs, and would take it in."""
    done: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, BaseException] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def run(self, name: str, work: Callable[[], Any]) -> None:
        started = time.monotonic()
        try:
            self.done[name] = work()
        except Exception as exc:  # handed to the test that takes this part
            self.errors[name] = exc
        finally:
            self.seconds[name] = round(time.monotonic() - started, 1)

    def take(self, name: str) -> Any:
        if name in self.errors:
            raise AssertionError(f"{name}: {self.errors[name]!r}") from self.errors[name]
        return self.done[name]


JOBS: dict[str, Job] = {}
_BEGAN = time.monotonic()
# Two at a time beside the tests, at the lowest priority: when the tests leave a core idle,
# each of two setups can have one.
AT_ONCE = 2
LOWEST = 19  # nice
_QUEUE: queue.Queue[tuple[Job, Callable[[Path], Any]]] = queue.Queue()
_WORKERS: list[threading.Thread] = []
_CLAIM = threading.Lock()  # who runs a setup registered in place: its fixture or the worker
_OPEN = threading.Event()  # cleared inside quiet(): no setup in place starts beside then
_OPEN.set()
LATE = "beside the suite, once those before it had ended"


def _job(name: str) -> Job:
    # Short: an engine's sockets live under it (a unix socket's path has 107 bytes at most).
    folder = Path(tempfile.mkdtemp(prefix=f"ik-{name.rpartition('.')[2]}-"))
    folder.chmod(0o755)  # as the checkout: the SIF tests' unprivileged user reads through it
    job = JOBS[name] = Job(name, folder)
    return job


def start(name: str, work: Callable[[Path], Any]) -> None:
    """Queue a setup; the setups run in the order they were queued, AT_ONCE at a time."""
    job = _job(name)
    _QUEUE.put((job, work))
    while len(_WORKERS) < AT_ONCE:
        worker = threading.Thread(target=_work, name=f"beside-{len(_WORKERS)}", daemon=True)
        _WORKERS.append(worker)
        worker.start()


def defer(name: str, work: Callable[[Path], Any]) -> None:
    """Register a setup that runs in place, in the thread of the first `result(name)`."""
    job = _job(name)
    job.work, job.where = work, "in place"


def _claim(job: Job, beside: bool = False) -> Callable[[Path], Any] | None:
    """A setup registered in place, for the caller to run; None when it is not (any more).
    `beside`: for the worker after the setups beside, which waits while a measure runs."""
    while True:
        if beside:
            _OPEN.wait()
        with _CLAIM:  # quiet() clears _OPEN before it takes _CLAIM
            if beside and not _OPEN.is_set():
                continue
            work, job.work = job.work, None
            return work


def after_beside() -> None:
    """Once every setup queued beside the suite has ended, run the setups registered in place
    beside the tests, one at a time, at the priority of the thread that calls this (the
    session's: call it from there, never from a worker at nice 19)."""
    first = [job for job in JOBS.values() if job.work is None]
    deferred = [job for job in JOBS.values() if job.work is not None]

    def late() -> None:
        for job in first:
            job.done.wait()
        for job in deferred:
            work = _claim(job, beside=True)
            if work is not None:
                job.where = LATE
                _run(job, work)

    if deferred:
        threading.Thread(target=late, name="beside-late", daemon=True).start()


def _run(job: Job, work: Callable[[Path], Any]) -> None:
    job.started = time.monotonic()
    try:
        job.value = work(job.folder)
    except BaseException as exc:  # handed to the module's fixture
        job.error = exc
    finally:
        job.seconds = round(time.monotonic() - job.started, 1)
        job.done.set()


def _work() -> None:
    # Linux keeps a nice value per thread, and what a thread starts inherits it.
    os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), LOWEST)
    while True:
        job, work = _QUEUE.get()
        _run(job, work)


def result(name: str, timeout: float = 5400) -> Any:
    """The module's setup as it ended; its folder is the module's to remove (`finish`)."""
    job = JOBS[name]
    work = _claim(job)
    if work is not None:
        _run(job, work)
    if not job.done.wait(timeout):
        raise AssertionError(f"{name}'s setup beside the suite did not end in {timeout:.0f} s")
    if job.error is not None:
        raise AssertionError(f"{name}'s setup {job.where} failed: {job.error!r}") \
            from job.error
    return job.value


@contextlib.contextmanager
def quiet(timeout: float = 5400, beside: bool = True) -> Iterator[None]:
    """Inside: every setup beside the suite has ended, and no setup registered in place
    starts beside it; for a test that measures the machine's own network traffic, which
    theirs would add to. After it, the setups in place that are left may start again.

    `beside=False`, for a measure of the suite's engine's own traffic: only the setups
    registered in place (which use that engine) are waited for and held back; those beside
    the suite run on engines, bridges or host processes of their own and go on."""
    _OPEN.clear()
    try:
        with _CLAIM:  # what is claimed by now runs; nothing more is claimed beside
            running = [job for job in JOBS.values() if job.work is None
                       and (beside or job.where != BESIDE)]
        for job in running:
            if not job.done.wait(timeout):
                raise AssertionError(f"{job.name}'s setup {job.where} is still running")
        yield
    finally:
        _OPEN.set()


@contextlib.contextmanager
def taken(name: str) -> Iterator[Any]:
    """A module fixture's body: its setup's result (`result`), whose `stop()` runs when the
    module ends, then the setup's folder goes (`finish`)."""
    found: Any = None
    try:
        found = result(name)
        yield found
    finally:
        if found is not None:
            found.stop()
        finish(name)


def finish(name: str) -> None:
    job = JOBS.get(name)
    if job is not None:
        if job.work is None:  # a setup in place that never ran has nothing to wait for
            job.done.wait()
        shutil.rmtree(job.folder, ignore_errors=True)


def finish_all() -> None:
    """At the session's end: every setup's folder, whatever its module's fixtures did."""
    for name in JOBS:
        finish(name)


def summary(write: Callable[[str], None]) -> None:
    for job in JOBS.values():
        if job.work is not None:  # in place, and its module's fixture never asked for it
            continue
        waited = round(job.started - _BEGAN, 1)
        write(f"{job.name} ({job.where}): {job.seconds} s, started {waited} s into the "
              "session")
        if isinstance(job.value, Parts):
            for part, seconds in job.value.seconds.items():
                write(f"    {part}: {seconds} s")
