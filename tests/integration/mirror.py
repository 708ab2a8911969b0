"""A site's package mirrors and proxy that demand credentials, for the credential tests.

One threaded HTTP server, reachable from build containers (it listens on every interface):
  /pypi/...    a PyPI index (forwarded to pypi.org; file links stay absolute to PyPI's CDN)
  /npm/...     an npm registry (forwarded to registry.npmjs.org)
  /debian/...  a Debian mirror (forwarded to deb.debian.org)
each answering 401 without the expected Basic credentials, and a forward proxy (CONNECT
and absolute-URI GET) answering 407 without the expected Proxy-Authorization. Every request
is recorded with whether it carried the right credentials, so a test can tell that the
credentials reached the tools that need them, and nowhere else.

Without a username it asks for no credentials. `fail_once` makes it a flaky mirror: the first
request whose path holds that text is answered 503, as a mirror or a proxy does in passing.
"""

from __future__ import annotations

import base64
import select
import socket
import ssl
import subprocess
import threading
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

UPSTREAMS = {
    "/pypi/": "https://pypi.org/",
    "/npm/": "https://registry.npmjs.org/",
    "/debian/": "http://deb.debian.org/debian/",
}
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
HOP_HEADERS = {"connection", "keep-alive", "proxy-authorization", "proxy-connection", "te",
               "trailer", "transfer-encoding", "upgrade", "authorization", "host"}


@dataclass
class Hit:
    kind: str  # pypi, npm, debian, connect, proxy-get
    path: str
    authorized: bool


@dataclass
class Mirror:
    username: str
    password: str
    tls: ssl.SSLContext | None = None  # given: a second listener speaks HTTPS
    fail_once: str = ""
    port: int = 0
    tls_port: int = 0
    hits: list[Hit] = field(default_factory=list)
    _servers: list[ThreadingHTTPServer] = field(default_factory=list)

    @property
    def expected(self) -> str:
        token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        return f"Basic {token}"

    def start(self) -> Mirror:
        mirror = self

        class Handler(_Handler):
            owner: ClassVar[Mirror] = mirror

        plain = ThreadingHTTPServer(("0.0.0.0", 0), Handler)
        self.port = plain.server_address[1]
        self._servers.append(plain)
        if self.tls is not None:
            secure = ThreadingHTTPServer(("0.0.0.0", 0), Handler)
            secure.socket = self.tls.wrap_socket(secure.socket, server_side=True)
            self.tls_port = secure.server_address[1]
            self._servers.append(secure)
        for server in self._servers:
            server.daemon_threads = True
            threading.Thread(target=server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()

    def kinds(self, authorized: bool = True) -> set[str]:
        return {h.kind for h in self.hits if h.authorized == authorized}


class _Handler(BaseHTTPRequestHandler):
    owner: ClassVar[Mirror]
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _record(self, kind: str, header: str) -> bool:
        ok = not self.owner.username or self.headers.get(header, "") == self.owner.expected
        self.owner.hits.append(Hit(kind, self.path, ok))
        return ok

    def _fail_once(self) -> bool:
        owner = self.owner
        with _FAILING:
            if not owner.fail_once or owner.fail_once not in self.path:
                return False
            owner.fail_once = ""
        self.send_error(503)
        return True

    def _refuse(self, status: int, challenge: tuple[str, str]) -> None:
        self.send_response(status)
        self.send_header(*challenge)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_CONNECT(self) -> None:
        if not self._record("connect", "Proxy-Authorization"):
            self._refuse(407, ("Proxy-Authenticate", 'Basic realm="site proxy"'))
            return
        host, _, port = self.path.rpartition(":")
        try:
            upstream = socket.create_connection((host, int(port)), timeout=60)
        except OSError:
            self.send_error(502)
            return
        self.send_response(200, "Connection established")
        self.end_headers()
        _relay(self.connection, upstream)
        self.close_connection = True

    def do_GET(self) -> None:
        self._forward(head=False)

    def do_HEAD(self) -> None:
        self._forward(head=True)

    def _forward(self, head: bool) -> None:
        if self.path.startswith(("http://", "https://")):
            if not self._record("proxy-get", "Proxy-Authorization"):
                self._refuse(407, ("Proxy-Authenticate", 'Basic realm="site proxy"'))
                return
            target = self.path
        else:
            prefix = next((p for p in UPSTREAMS if self.path.startswith(p)), None)
            if prefix is None:
                self.send_error(404)
                return
            if not self._record(prefix.strip("/"), "Authorization"):
                self._refuse(401, ("WWW-Authenticate", 'Basic realm="site mirror"'))
                return
            target = UPSTREAMS[prefix] + self.path[len(prefix):]
            if self._fail_once():
                return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS}
        request = urllib.request.Request(target, headers=headers,
                                         method="HEAD" if head else "GET")
        context = ssl.create_default_context(cafile=CA_BUNDLE)
        try:
            response = urllib.request.urlopen(request, timeout=120, context=context)
        except urllib.error.HTTPError as exc:
            response = exc
        except OSError:
            self.send_error(502)
            return
        with response:
            body = b"" if head else response.read()
            self.send_response(response.status)
            for key, value in response.headers.items():
                if key.lower() not in HOP_HEADERS | {"content-length"}:
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(body) if not head else
                                                   response.headers.get("Content-Length", 0)))
            self.end_headers()
            if body:
                self.wfile.write(body)


_FAILING = threading.Lock()


def _relay(a: socket.socket, b: socket.socket) -> None:
    sockets = [a, b]
    try:
        while True:
            readable, _, broken = select.select(sockets, [], sockets, 120)
            if broken or not readable:
                return
            for s in readable:
                data = s.recv(65536)
                if not data:
                    return
                (b if s is a else a).sendall(data)
    except OSError:
        return
    finally:
        b.close()


def make_ca(folder: Path, host: str) -> tuple[Path, ssl.SSLContext]:
    """A throwaway CA and a server certificate for `host` (an IP address) signed by it."""
    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=folder)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
            "/CN=imagekit test CA", "-keyout", "ca.key", "-out", "ca.crt")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={host}",
            "-keyout", "server.key", "-out", "server.csr")
    (folder / "san.ext").write_text(f"subjectAltName=IP:{host}\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", "server.crt")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(folder / "server.crt", folder / "server.key")
    return folder / "ca.crt", context
