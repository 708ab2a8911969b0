"""A registry that hands tag lists out in small pages, as GHCR, GitLab and Harbor do.

Debian's docker-registry (2.8) answers `GET /v2/<name>/tags/list` with every tag at once:
it ignores `n` and never sends a `Link` header, so a client that reads one page passes
against it and loses tags against the registries sites use. This forwarder stands in front
of the real registry and passes every request through unchanged, except the tag list, which
it cuts into pages the way the distribution spec describes (tags in lexical order, at most
`n` after `last`, a `Link: <...?n=N&last=T>; rel="next"` while more remain), capping `n` at
a page size of its own as hosted registries cap it. Every tag-list request is recorded, so a
test can tell that more than one page was read.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, urlsplit

import requests

HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
               "host", "content-length"}
TAGS = "/tags/list"


@dataclass
class Paging:
    upstream: str  # host:port of the real registry (plain HTTP)
    page: int  # the most tags one answer holds, whatever `n` asks for
    address: str = ""  # host:port this forwarder listens on, once started
    pages: list[str] = field(default_factory=list)  # every tag-list path asked for
    session: requests.Session = field(default_factory=requests.Session)

    def __post_init__(self) -> None:
        self.session.trust_env = False  # loopback: never through the machine's proxy

    def answer_tags(self, path: str, query: str) -> tuple[int, bytes, dict[str, str]]:
        found = self.session.get(f"http://{self.upstream}{path}", timeout=30)
        if found.status_code != 200:
            return found.status_code, found.content, {"Content-Type": "application/json"}
        body = found.json()
        asked = parse_qs(query)
        size = min(int(asked.get("n", [str(self.page)])[0]), self.page)
        last = asked.get("last", [""])[0]
        every = sorted(body.get("tags") or [])
        after = [t for t in every if t > last]
        page, rest = after[:size], after[size:]
        headers = {"Content-Type": "application/json"}
        if rest and page:
            headers["Link"] = f'<{path}?n={size}&last={quote(page[-1])}>; rel="next"'
        return 200, json.dumps({"name": body.get("name"), "tags": page}).encode(), headers

    def forward(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        if handler.command == "GET" and parts.path.endswith(TAGS):
            self.pages.append(handler.path)
            status, content, headers = self.answer_tags(parts.path, parts.query)
        else:
            length = int(handler.headers.get("Content-Length") or 0)
            data = handler.rfile.read(length) if length else None
            sent = {k: v for k, v in handler.headers.items() if k.lower() not in HOP_HEADERS}
            found = self.session.request(handler.command, f"http://{self.upstream}{handler.path}",
                                     headers=sent, data=data, timeout=60,
                                     allow_redirects=False)
            status, content = found.status_code, found.content
            headers = {k: v for k, v in found.headers.items()
                       if k.lower() not in HOP_HEADERS | {"content-encoding"}}
        handler.send_response(status)
        for key, value in headers.items():
            handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(content)))
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(content)


@contextmanager
def paging(upstream: str, page: int) -> Iterator[Paging]:
    """A paging forwarder on a free loopback port in front of UPSTREAM, stopped after."""
    state = Paging(upstream, page)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def _any(self) -> None:
            state.forward(self)

        do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _any

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.address = f"127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
