"""Run code in a real kernel through a real Jupyter Server (REST + kernel WebSocket)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
from websockets.sync.client import connect


def run_cell(
    base_url: str, token: str, code: str, timeout: float = 60.0, origin: str | None = None
) -> str:
    """Execute `code` in a new kernel of the server at `base_url`; return its output text.

    `origin`: sent with the kernel's WebSocket, for servers behind a same-origin check."""
    headers = {"Authorization": f"token {token}"}
    kernel = httpx.post(
        f"{base_url}api/kernels",
        headers=headers,
        json={"name": "python3"},
        timeout=30,
        trust_env=False,
    ).json()
    ws_url = base_url.replace("http://", "ws://") + f"api/kernels/{kernel['id']}/channels"
    try:
        ws_headers = {**headers, **({"Origin": origin} if origin else {})}
        with connect(ws_url, additional_headers=ws_headers, open_timeout=30) as socket:
            msg_id = uuid.uuid4().hex
            socket.send(json.dumps(_execute_request(msg_id, code)))
            return _collect(socket, msg_id, timeout)
    finally:
        httpx.delete(
            f"{base_url}api/kernels/{kernel['id']}", headers=headers, timeout=30, trust_env=False
        )


def _execute_request(msg_id: str, code: str) -> dict[str, Any]:
    return {
        "header": {
            "msg_id": msg_id,
            "username": "test",
            "session": uuid.uuid4().hex,
            "msg_type": "execute_request",
            "version": "5.3",
            "date": datetime.now(UTC).isoformat(),
        },
        "parent_header": {},
        "metadata": {},
        "channel": "shell",
        "buffers": [],
        "content": {
            "code": code,
            "silent": False,
            "store_history": False,
            "user_expressions": {},
            "allow_stdin": False,
            "stop_on_error": True,
        },
    }


def _collect(socket: Any, msg_id: str, timeout: float) -> str:
    output: list[str] = []
    while True:
        message = json.loads(socket.recv(timeout=timeout))
        if message.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        kind = message["msg_type"]
        content = message["content"]
        if kind == "stream":
            output.append(content["text"])
        elif kind in ("execute_result", "display_data"):
            output.append(content["data"].get("text/plain", "") + "\n")
        elif kind == "error":
            raise AssertionError("cell failed: " + "\n".join(content["traceback"]))
        elif kind == "status" and content["execution_state"] == "idle":
            return "".join(output)
