"""Run code in a real kernel through the Jupyter server: REST to start it, the websocket
channels to execute (a kernel's REST state stays 'starting' until a client connects)."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import requests
import websocket

from imagekit.checks import CheckFailed


def execute(base_url: str, token: str, kernel: str, code: str, timeout: float = 120) -> str:
    """Start `kernel`, run `code`, return everything it printed; always shut it down."""
    session = requests.Session()
    if token:
        session.headers["Authorization"] = f"token {token}"
    else:
        # Without a token the server authenticates nothing but still wants the XSRF cookie
        # echoed back on POSTs, as a browser that loaded a page does.
        session.get(f"{base_url}/lab", timeout=30)
        xsrf = session.cookies.get("_xsrf")
        if xsrf:
            session.headers["X-XSRFToken"] = xsrf
    response = session.post(f"{base_url}/api/kernels", json={"name": kernel}, timeout=30)
    if response.status_code != 201:
        raise CheckFailed(f"POST /api/kernels {kernel}: HTTP {response.status_code} "
                          f"{response.text[:200]}")
    kernel_id = response.json()["id"]
    try:
        return _run(base_url, session, kernel_id, code, timeout)
    finally:
        session.delete(f"{base_url}/api/kernels/{kernel_id}", timeout=30)


def _run(base_url: str, session: requests.Session, kernel_id: str, code: str,
         timeout: float) -> str:
    ws_url = base_url.replace("http://", "ws://", 1) + f"/api/kernels/{kernel_id}/channels"
    header = [f"{k}: {v!s}" for k, v in session.headers.items()
              if k in ("Authorization", "X-XSRFToken") and isinstance(v, str)]
    cookie = "; ".join(f"{c.name}={c.value}" for c in session.cookies)
    ws = websocket.create_connection(ws_url, header=header, cookie=cookie or None,
                                     timeout=timeout)
    try:
        msg_id = uuid.uuid4().hex
        ws.send(json.dumps(_message(msg_id, code)))
        output: list[str] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg: dict[str, Any] = json.loads(ws.recv())
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                output.append(content["text"])
            elif kind in ("execute_result", "display_data"):
                output.append(content["data"].get("text/plain", ""))
            elif kind == "error":
                raise CheckFailed(f"{content['ename']}: {content['evalue']}")
            elif kind == "status" and content["execution_state"] == "idle":
                return "".join(output)
        raise CheckFailed(f"no reply within {timeout:.0f} s; output so far: {''.join(output)}")
    finally:
        ws.close()


def _message(msg_id: str, code: str) -> dict[str, Any]:
    return {
        "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": "imagekit",
                   "session": uuid.uuid4().hex, "version": "5.3"},
        "parent_header": {},
        "metadata": {},
        "channel": "shell",
        "content": {"code": code, "silent": False, "store_history": False,
                    "user_expressions": {}, "allow_stdin": False, "stop_on_error": True},
        "buffers": [],
    }
