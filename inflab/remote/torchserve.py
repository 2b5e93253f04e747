"""TorchServe on the instance, reached through SSH: its APIs over a local port forward.

The server (``payload/serve.py``) listens on the instance's loopback only; this client opens
asyncssh local port forwards to its inference and management ports on an existing SSH
connection, so the security group never opens more than tcp/22. The API keys are read from
TorchServe's ``key_file.json`` over SFTP and kept in this object's memory only: they are sent
in the Authorization header and never logged or stored.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from dataclasses import dataclass

import asyncssh

from ..errors import InflabError
from .sftp import read_file

LOOPBACK = "127.0.0.1"


class ServerNotReady(InflabError, RuntimeError):
    """The server has not written its endpoints or keys yet (or is gone)."""


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    ms: float

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def error_text(self) -> str:
        """TorchServe's message from an error answer (its JSON ``message`` or ``error``), else the body."""
        try:
            doc = self.json()
        except ValueError:
            return self.body.decode("utf-8", "replace").strip()[:300]
        if isinstance(doc, dict):
            return str(doc.get("error") or doc.get("message") or doc)[:300]
        return str(doc)[:300]


def _call(url: str, key: str, data: bytes | None, content_type: str | None, timeout: float) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    if content_type:
        headers["Content-Type"] = content_type
    req = urllib.request.Request(url, data=data, headers=headers, method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class Server:
    """One TorchServe server on the far side of ``conn``; use as ``async with Server(conn, run_dir)``."""

    def __init__(self, conn: asyncssh.SSHClientConnection, run_dir: str):
        self.conn = conn
        self.run_dir = run_dir.rstrip("/")
        self.endpoints: dict = {}
        self._keys: dict = {}
        self._ports: dict[str, int] = {}
        self._listeners: list = []

    async def __aenter__(self) -> Server:
        raw_ep = await read_file(self.conn, f"{self.run_dir}/endpoints.json")
        if not raw_ep:
            raise ServerNotReady("TorchServe has not written its endpoints yet")
        try:
            self.endpoints = json.loads(raw_ep)
        except ValueError:
            raise ServerNotReady("TorchServe's endpoints are not complete yet") from None
        if self.endpoints.get("token_auth", True):  # TorchServe 0.11.0 has no keys (no token authorization)
            raw_keys = await read_file(self.conn, f"{self.run_dir}/key_file.json")
            if not raw_keys:
                raise ServerNotReady("TorchServe has not written its keys yet")
            try:
                keys = json.loads(raw_keys)
                self._keys = {"inference": keys["inference"]["key"], "management": keys["management"]["key"]}
            except (ValueError, KeyError, TypeError):
                raise ServerNotReady("TorchServe's key file is not complete yet") from None
        else:
            self._keys = {"inference": "", "management": ""}
        for api in ("inference", "management"):
            listener = await self.conn.forward_local_port(LOOPBACK, 0, LOOPBACK, int(self.endpoints[api]))
            self._listeners.append(listener)
            self._ports[api] = listener.get_port()
        return self

    async def __aexit__(self, *exc) -> None:
        for listener in self._listeners:
            listener.close()
        self._listeners.clear()
        self._keys.clear()

    def local_port(self, api: str) -> int:
        """The port on this machine that reaches ``api`` ("inference" or "management") through the tunnel."""
        return self._ports[api]

    async def request(
        self, api: str, path: str, *, data: bytes | None = None, content_type: str | None = None, timeout: float = 30
    ) -> Answer:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        status, body = await asyncio.to_thread(
            _call, f"http://{LOOPBACK}:{self._ports[api]}{path}", self._keys[api], data, content_type, timeout
        )
        return Answer(status, body, (loop.time() - t0) * 1000)

    async def model(self, name: str, timeout: float = 15) -> Answer:
        """The management API's description of ``name`` (GET /models/NAME): versions, workers and their status."""
        return await self.request("management", f"/models/{name}", timeout=timeout)

    async def predict(self, name: str, body: bytes, content_type: str, timeout: float = 60) -> Answer:
        return await self.request(
            "inference", f"/predictions/{name}", data=body, content_type=content_type, timeout=timeout
        )


def workers_of(description) -> list[dict]:
    """The workers in a GET /models/NAME answer (a list with one entry per version)."""
    if isinstance(description, list) and description and isinstance(description[0], dict):
        return [w for w in description[0].get("workers") or [] if isinstance(w, dict)]
    return []


def worker_table(description) -> list[str]:
    """The management API's answer as the lines of an aligned table (model line, then one row per worker)."""
    if not (isinstance(description, list) and description and isinstance(description[0], dict)):
        return ["(no model in the answer)"]
    m = description[0]
    head = (
        f"model {m.get('modelName')} {m.get('modelVersion')} · {m.get('modelUrl')} · runtime {m.get('runtime')} · "
        f"workers min {m.get('minWorkers')} / max {m.get('maxWorkers')} · batchSize {m.get('batchSize')} · "
        f"maxBatchDelay {m.get('maxBatchDelay')} ms · device {m.get('deviceType', '-')}"
    )
    cols = ("WORKER", "STATUS", "PID", "STARTED", "MEMORY", "GPU")
    rows = [
        (
            str(w.get("id", "")),
            str(w.get("status", "")),
            str(w.get("pid", "")),
            str(w.get("startTime", "")).replace("T", " ")[:19],
            str(w.get("memoryUsage", "")),
            "yes" if w.get("gpu") else "no",
        )
        for w in workers_of(description)
    ]
    widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(cols)]
    lines = [head, "  ".join(c.ljust(w) for c, w in zip(cols, widths)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]
    return lines
