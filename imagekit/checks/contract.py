"""Each check starts a container the way its consumer does and looks at it from outside.

A check returns its evidence (what was seen) or raises CheckFailed with what was seen
instead. Which checks an image gets follows from its notebook type.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import requests

from imagekit.checks import CheckFailed, CheckResult
from imagekit.checks.container import LABEL, Running, started
from imagekit.checks.kernel import execute
from imagekit.engine.client import Engine
from imagekit.engine.container import Health, Healthcheck, VolumeMount
from imagekit.engine.errors import EngineError
from imagekit.model import Image

PREFIX = "/notebook/ns/name"
HUB_PREFIX = "/user/imagekit/"


@dataclass
class Target:
    engine: Engine
    ref: str
    image: Image
    # Added to every container's environment: what emulation needs (engine.emulation)
    env: dict[str, str] = field(default_factory=dict)
    results: list[CheckResult] = field(default_factory=list)
    latencies: dict[str, float] = field(default_factory=dict)

    @property
    def port(self) -> int:
        return self.image.runtime.port

    def record(self, name: str, check: Callable[[], str]) -> bool:
        began = time.monotonic()
        try:
            evidence, ok = check(), True
        except CheckFailed as exc:
            evidence, ok = str(exc), False
        except Exception as exc:
            evidence, ok = f"{type(exc).__name__}: {exc}", False
        self.results.append(CheckResult(self.image.name, name, ok, evidence,
                                        round(time.monotonic() - began, 1)))
        return ok

    @contextmanager
    def run(self, **options: Any) -> Iterator[Running]:
        options["env"] = {**self.env, **options.get("env", {})}
        with started(self.engine, self.ref, port=self.port, **options) as running:
            yield running


def _expect(response: requests.Response, status: int, contains: str = "") -> str:
    if response.status_code != status:
        raise CheckFailed(f"HTTP {response.status_code} (wanted {status}): "
                          f"{response.text[:300]}")
    if contains and contains not in response.text:
        raise CheckFailed(f"HTTP {status} but the body lacks {contains!r}: {response.text[:300]}")
    return f"HTTP {status}"


# --- the Jupyter server every image carries -------------------------------------------

def jupyter_api(t: Target, server: Running, prefix: str = "") -> None:
    """The stack's Jupyter HTTP checks and kernel executions against a running server."""
    base = server.base + prefix.rstrip("/")
    auth = {"Authorization": f"token {server.token}"} if server.token else {}
    for http in t.image.checks.http:
        if http.server != "jupyter" and t.image.runtime.type != "jupyter":
            continue
        t.record(f"GET {http.path}", lambda h=http: _expect(  # type: ignore[misc]
            requests.get(base + h.path, headers=auth, timeout=30), h.status, h.contains))
    for run in t.image.checks.execute:
        def check(run: Any = run) -> str:
            output = execute(base, server.token, run.kernel, run.code)
            if run.expect not in output:
                raise CheckFailed(f"kernel {run.kernel} printed {output.strip()!r}, "
                                  f"not {run.expect!r}")
            return f"{run.kernel} printed {output.strip()!r}"
        t.record(f"kernel {run.kernel}: {run.code[:50]}", check)


def token_auth(t: Target) -> None:
    """Plain `docker run` / an Armada pod: token on, requests without it refused."""
    with t.run(healthcheck=_fast_health()) as server:
        def answers() -> str:
            _response, latency = server.wait_http(f"/api/status?token={server.token}")
            t.latencies["first_200_s"] = round(latency, 2)
            refused = requests.get(server.base + "/api/status", timeout=10)
            if refused.status_code not in (401, 403):
                raise CheckFailed(f"without the token: HTTP {refused.status_code}, not 403")
            return (f"JUPYTER_TOKEN honoured: 200 with it after {latency:.2f} s, "
                    f"{refused.status_code} without")
        if not t.record("docker run: token auth", answers):
            return
        jupyter_api(t, server)
        t.record("HEALTHCHECK turns healthy", lambda: _healthy(server))


def generated_token(t: Target) -> None:
    with t.run(token="") as server:
        def printed() -> str:
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                found = re.search(r"http://127\.0\.0\.1:\d+/\S*\?token=([0-9a-f]{32,})",
                                  server.logs())
                if found:
                    token = found.group(1)
                    server.wait_http(f"/api/status?token={token}")
                    return f"printed {found.group(0)[:40]}...; that token gets HTTP 200"
                time.sleep(0.3)
            raise CheckFailed(f"no URL with a token in the log:\n{server.logs()[-800:]}")
        t.record("docker run: generated token printed", printed)


def kubeflow_prefix(t: Target) -> None:
    """Kubeflow Notebook CRD: NB_PREFIX, no token, embeddable in an iframe."""
    with t.run(token="", env={"NB_PREFIX": PREFIX}) as server:
        def under_prefix() -> str:
            server.wait_http(f"{PREFIX}/api/status")
            lab = requests.get(f"{server.base}{PREFIX}/lab", timeout=30)
            _expect(lab, 200)
            csp = lab.headers.get("Content-Security-Policy", "")
            if "frame-ancestors" not in csp or "*" not in csp:
                raise CheckFailed(f"not embeddable: Content-Security-Policy {csp!r}")
            outside = requests.get(f"{server.base}/api/status", timeout=10)
            if outside.status_code != 404:
                raise CheckFailed(f"/api/status outside the prefix: HTTP "
                                  f"{outside.status_code}, not 404")
            return (f"{PREFIX}/api/status 200 without a token; /lab 200 with CSP {csp!r}; "
                    "outside the prefix 404")
        if t.record("kubeflow: served under NB_PREFIX without token", under_prefix):
            t.record("kubeflow: kernel runs under the prefix", lambda: _kernel_42(server, PREFIX))


def jupyterhub_singleuser(t: Target) -> None:
    """JupyterHub: with JUPYTERHUB_API_TOKEN set the image runs jupyterhub-singleuser, which
    talks to the hub first. No hub listens here, so it must be seen trying."""
    hub_api = "http://127.0.0.1:9/hub/api"
    env = {
        "JUPYTERHUB_API_TOKEN": secrets.token_hex(16),
        "JUPYTERHUB_API_URL": hub_api,
        "JUPYTERHUB_BASE_URL": "/",
        "JUPYTERHUB_SERVICE_PREFIX": HUB_PREFIX,
        "JUPYTERHUB_SERVICE_URL": f"http://0.0.0.0:{t.port}{HUB_PREFIX}",
        "JUPYTERHUB_USER": "imagekit",
        "JUPYTERHUB_CLIENT_ID": "jupyterhub-user-imagekit",
        "JUPYTERHUB_OAUTH_CALLBACK_URL": f"{HUB_PREFIX}oauth_callback",
        "JUPYTERHUB_HOST": "",
    }
    with t.run(token="", env=env) as server:
        def reaches_for_hub() -> str:
            deadline = time.monotonic() + 60
            process = ""
            while time.monotonic() < deadline:
                _, process = server.exec("ps -eo args")
                logs = server.logs()
                if "jupyterhub-singleuser" in process and "127.0.0.1:9" in logs:
                    line = next(x for x in logs.splitlines() if "127.0.0.1:9" in x)
                    return f"jupyterhub-singleuser runs; log: {line.strip()[:160]}"
                if server.container.state().status == "exited" and "127.0.0.1:9" in logs:
                    line = next(x for x in logs.splitlines() if "127.0.0.1:9" in x)
                    return f"jupyterhub-singleuser tried the hub and gave up: {line[:160]}"
                time.sleep(0.5)
            raise CheckFailed(f"processes:\n{process}\nlog:\n{server.logs()[-800:]}")
        t.record("jupyterhub: jupyterhub-singleuser reaches for the hub", reaches_for_hub)


def random_uid_volume(t: Target) -> None:
    """Kubernetes with a fresh PVC as home: empty, root-owned, chowned (fsGroup), random uid."""
    uid = 12345
    home = f"/home/{t.image.runtime.user}"
    volume = t.engine.create_volume(labels={LABEL: "1"})
    try:
        t.engine.run(t.ref, ["-c", f"chown {uid}:100 /h && chmod 0770 /h"],
                     entrypoint=["/bin/bash"], user="0", labels={LABEL: "1"},
                     volumes=[VolumeMount(volume, "/h")])
        # nocopy semantics: a named volume would be pre-filled from the image by Docker
        # itself; a PVC is not, so the seed must come from the start script.
        with t.run(user=f"{uid}:100",
                   volumes=(VolumeMount(volume, home, nocopy=True),)) as server:
            def seeded() -> str:
                server.wait_http(f"/api/status?token={server.token}")
                code, listing = server.exec(
                    f"ls -A {home}; stat -c '%u %n' {home}/.imagekit-seeded")
                if code != 0 or ".imagekit-seeded" not in listing or str(uid) not in listing:
                    raise CheckFailed(f"home not seeded: {listing}")
                output = execute(server.base, server.token, "python3",
                                 "import os; open(os.path.expanduser('~/w.txt'), 'w').write('x');"
                                 " print(os.getuid())")
                if str(uid) not in output:
                    raise CheckFailed(f"kernel ran as {output!r}")
                seen = " ".join(listing.split()[:6])
                return f"uid {uid}: HTTP 200, home seeded ({seen}), kernel wrote to it"
            t.record(f"random uid {uid} with an empty volume as home", seeded)
    finally:
        # Interrupted mid-check, a container may still hold it: main() then removes both.
        with contextlib.suppress(EngineError):
            t.engine.remove_volume(volume)


def read_only_unknown_uid(t: Target) -> None:
    """The Singularity case under Docker: read-only root, a uid with no passwd entry that
    cannot write the home, only /tmp writable."""
    with t.run(read_only=True, tmpfs={"/tmp": "rw,exec,mode=1777"}, user="23456:23456") as server:
        def still_serves() -> str:
            server.wait_http(f"/api/status?token={server.token}")
            if "not writable" not in server.logs():
                raise CheckFailed("the start script did not fall back to /tmp")
            _kernel_42(server, "")
            return "read-only root, uid 23456: runtime files in /tmp, HTTP 200, kernel runs"
        t.record("read-only root, uid not in passwd, home not writable", still_serves)


def _kernel_42(server: Running, prefix: str) -> str:
    output = execute(server.base + prefix, server.token, "python3", "print(6 * 7)")
    if "42" not in output:
        raise CheckFailed(f"kernel printed {output!r}")
    return "python3 kernel printed 42"


def _fast_health() -> Healthcheck:
    # The image's HEALTHCHECK command with a short interval, so the check does not wait 10 s.
    return Healthcheck(interval=1, timeout=5, retries=3, start_period=60)


def _healthy(server: Running, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    state = Health(None)
    while time.monotonic() < deadline:
        state = server.container.health()
        if state.status == "healthy":
            return f"{server.engine.name} reports healthy"
        time.sleep(0.5)
    raise CheckFailed(f"health {state.status!r}: {state.output}")


# --- editors served as the main app (code-server, RStudio) ------------------------------

def editor_at_root(t: Target) -> None:
    """Kubeflow's imageGroupOne/Two: the platform rewrites NB_PREFIX away, so the editor
    answers at / on the notebook port with no auth of its own."""
    health = t.image.runtime.healthcheck.path
    with t.run(token="", env={"NB_PREFIX": PREFIX}, healthcheck=_fast_health()) as server:
        def at_root() -> str:
            _response, latency = server.wait_http(health)
            t.latencies["first_200_s"] = round(latency, 2)
            page = requests.get(server.base + "/", timeout=30)
            _expect(page, 200)
            return f"{health} HTTP 200 after {latency:.2f} s; / HTTP 200 without auth"
        if t.record(f"kubeflow: {t.image.runtime.type} at / on {t.port}", at_root):
            for http in t.image.checks.http:
                if http.server == "main":
                    t.record(f"GET {http.path}", lambda h=http: _expect(  # type: ignore[misc]
                        requests.get(server.base + h.path, timeout=30), h.status, h.contains))
            t.record("HEALTHCHECK turns healthy", lambda: _healthy(server))


def editor_password(t: Target) -> None:
    with t.run() as server:
        def protected() -> str:
            server.wait_http(t.image.runtime.healthcheck.path)
            page = requests.get(server.base + "/", timeout=30, allow_redirects=False)
            if page.status_code not in (302, 303, 401):
                raise CheckFailed(f"/ without credentials: HTTP {page.status_code}")
            where = page.headers.get("Location", "")
            return f"/ without credentials: HTTP {page.status_code} -> {where}"
        t.record("docker run: editor asks for credentials", protected)


def editor_behind_jupyter(t: Target) -> None:
    """Under JupyterHub the image serves Jupyter and the editor sits behind
    jupyter-server-proxy below the user's prefix."""
    path = {"code-server": "/vscode/", "rstudio": "/rstudio/"}[t.image.runtime.type]
    with t.run(command=["start-notebook.sh"]) as server:
        def proxied() -> str:
            server.wait_http(f"/api/status?token={server.token}")
            _response, latency = server.wait_http(f"{path}?token={server.token}", timeout=120)
            return f"{path} through jupyter-server-proxy: HTTP 200 after {latency:.1f} s"
        if t.record(f"jupyter-server-proxy serves {path}", proxied):
            jupyter_api(t, server)


CONTRACTS: dict[str, tuple[Callable[[Target], None], ...]] = {
    "jupyter": (token_auth, generated_token, kubeflow_prefix, jupyterhub_singleuser,
                random_uid_volume, read_only_unknown_uid),
    "code-server": (editor_at_root, editor_password, editor_behind_jupyter,
                    jupyterhub_singleuser),
    "rstudio": (editor_at_root, editor_behind_jupyter, jupyterhub_singleuser),
}
