"""A real JupyterHub for the end-to-end tests, driven the way people and services drive it.

The hub runs with configurable-http-proxy (from npm, scripts/setup.sh), the dummy
authenticator and a service whose token has admin scopes. A user logs in and picks an image
on the spawn form, as in a browser; the service watches and stops servers over the REST
API and reaches the user's server through the hub's proxy with its token.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import requests
import websocket

from tests.integration.slurm import free_port

CHP = Path(os.environ.get("IMAGEKIT_CHP",
                          "/var/cache/imagekit/chp/node_modules/.bin/configurable-http-proxy"))
PASSWORD = "e2e-password"  # the dummy authenticator's shared password (loopback only)


class HubError(Exception):
    pass


class Hub:
    def __init__(self, folder: Path, config: str, *, hub_ip: str = "127.0.0.1",
                 env: dict[str, str] | None = None) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.folder.chmod(0o755)
        self.token = secrets.token_hex(24)
        self.port, self.api_port, self.hub_port = free_port(), free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **(env or {})}
        self.config = self.folder / "jupyterhub_config.py"
        self.config.write_text(self._base(hub_ip) + config)
        self.log = self.folder / "hub.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def _base(self, hub_ip: str) -> str:
        if not CHP.exists():
            raise HubError(f"{CHP} is missing: scripts/setup.sh installs configurable-http-proxy")
        d = self.folder
        return "\n".join([
            "# The test hub (tests/integration/hubs.py); the consumer export follows.",
            f"c.JupyterHub.bind_url = 'http://127.0.0.1:{self.port}'",
            f"c.JupyterHub.hub_bind_url = 'http://{hub_ip}:{self.hub_port}'",
            f"c.ConfigurableHTTPProxy.api_url = 'http://127.0.0.1:{self.api_port}'",
            f"c.ConfigurableHTTPProxy.command = [{str(CHP)!r}]",
            f"c.ConfigurableHTTPProxy.pid_file = '{d}/proxy.pid'",
            f"c.JupyterHub.db_url = 'sqlite:///{d}/jupyterhub.sqlite'",
            f"c.JupyterHub.cookie_secret_file = '{d}/cookie_secret'",
            f"c.JupyterHub.pid_file = '{d}/jupyterhub.pid'",
            "c.JupyterHub.authenticator_class = 'dummy'",
            f"c.DummyAuthenticator.password = {PASSWORD!r}",
            "c.Authenticator.allow_all = True",
            "c.JupyterHub.cleanup_servers = True",
            # Not DEBUG: batchspawner then logs the job's environment, its API token included.
            "c.JupyterHub.log_level = 'INFO'",
            f"c.JupyterHub.services = [{{'name': 'e2e', 'api_token': {self.token!r}}}]",
            "c.JupyterHub.load_roles = [{'name': 'e2e', 'services': ['e2e'], 'scopes': "
            "['admin:users', 'admin:servers', 'access:servers', 'tokens']}]",
            "",
            "",
        ])

    # --- lifecycle -----------------------------------------------------------------------

    def start(self, timeout: float = 60) -> None:
        log = self.log.open("ab")
        self.proc = subprocess.Popen(["jupyterhub", "-f", str(self.config)], cwd=self.folder,
                                     stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise HubError(f"jupyterhub exited {self.proc.returncode}:\n{self.tail()}")
            try:
                if requests.get(f"{self.url}/hub/api/", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.3)
        raise HubError(f"jupyterhub did not answer in {timeout:.0f} s:\n{self.tail()}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()  # the hub stops its users' servers first (cleanup_servers)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, 9)
            self.proc.wait()

    def tail(self, chars: int = 6000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    # --- REST, as the service ------------------------------------------------------------

    def api(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"token {self.token}"}
        return requests.request(method, f"{self.url}/hub/api{path}", headers=headers,
                                timeout=30, **kwargs)

    def server(self, user: str) -> dict[str, Any] | None:
        response = self.api("GET", f"/users/{user}")
        if response.status_code == 404:
            return None
        response.raise_for_status()
        servers: dict[str, Any] = response.json().get("servers", {})
        return servers.get("")

    def wait_ready(self, user: str, timeout: float = 600) -> float:
        """Seconds until the hub reports the user's server ready."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            server = self.server(user)
            if server and server.get("ready"):
                return time.monotonic() - start
            if server is None and time.monotonic() - start > 5:
                raise HubError(f"{user}'s server stopped before it was ready:\n{self.tail()}")
            time.sleep(0.25)
        raise HubError(f"{user}'s server was not ready in {timeout:.0f} s:\n{self.tail()}")

    def stop_server(self, user: str, timeout: float = 120) -> None:
        response = self.api("DELETE", f"/users/{user}/server")
        if response.status_code not in (202, 204):
            raise HubError(f"DELETE server: HTTP {response.status_code} {response.text}")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.server(user) is None:
                return
            time.sleep(0.25)
        raise HubError(f"{user}'s server did not stop in {timeout:.0f} s:\n{self.tail()}")

    # --- as a person in a browser --------------------------------------------------------

    def login(self, user: str) -> requests.Session:
        browser = requests.Session()
        page = browser.get(f"{self.url}/hub/login", timeout=30)
        page.raise_for_status()
        form = {"username": user, "password": PASSWORD, "_xsrf": browser.cookies["_xsrf"]}
        response = browser.post(f"{self.url}/hub/login", data=form, timeout=30,
                                allow_redirects=False)
        if response.status_code != 302:
            raise HubError(f"login as {user}: HTTP {response.status_code}")
        return browser

    def spawn_form(self, browser: requests.Session, user: str) -> str:
        page = browser.get(f"{self.url}/hub/spawn/{user}", timeout=30)
        page.raise_for_status()
        return page.text

    def submit_form(self, browser: requests.Session, user: str, fields: dict[str, str]) -> None:
        """POST the spawn form with one choice made; the hub starts the server."""
        data = {**fields, "_xsrf": browser.cookies["_xsrf"]}
        response = browser.post(f"{self.url}/hub/spawn/{user}", data=data, timeout=60,
                                allow_redirects=False)
        if response.status_code not in (200, 302):
            raise HubError(f"spawn form: HTTP {response.status_code} {response.text[:500]}")

    # --- the user's server, through the proxy --------------------------------------------

    def user_url(self, user: str) -> str:
        return f"{self.url}/user/{user}"

    def get(self, user: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"token {self.token}"}
        return requests.get(f"{self.user_url(user)}{path}", headers=headers, timeout=60,
                            **kwargs)

    def terminal(self, user: str, command: str, expect: str, timeout: float = 120) -> str:
        """Type `command` in a new Jupyter terminal; return its output once `expect` shows."""
        headers = {"Authorization": f"token {self.token}"}
        response = requests.post(f"{self.user_url(user)}/api/terminals", headers=headers,
                                 timeout=30)
        if response.status_code != 200:
            raise HubError(f"POST /api/terminals: HTTP {response.status_code}")
        name = response.json()["name"]
        ws_url = self.user_url(user).replace("http://", "ws://", 1) + \
            f"/terminals/websocket/{name}"
        ws = websocket.create_connection(ws_url, header=[f"Authorization: token {self.token}"],
                                         timeout=timeout)
        output = ""
        try:
            ws.send(json.dumps(["stdin", command + "\r"]))
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and not re.search(expect, output):
                message = json.loads(ws.recv())
                if message[0] == "stdout":
                    output += message[1]
        finally:
            ws.close()
            requests.delete(f"{self.user_url(user)}/api/terminals/{name}", headers=headers,
                            timeout=30)
        if not re.search(expect, output):
            raise HubError(f"terminal: {expect!r} not seen in:\n{output[-3000:]}")
        return output


def unique_user(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:6]}"
