"""The sandbox endpoint's door: a WSGI layer that answers only the lab's own clients.

The emulator behind it serves everything it holds — its whole state as JSON, a reset
button, a dashboard — to whoever asks, and loopback is shared with every local user. So
every request must carry the daemon's secret in one header; the secret is made at start
and written to a file only this user can read (``<INFLAB_HOME>/sandbox/secret.json``).
Only the health route stays open, and it says no more than "ok" and the daemon's pid.
"""

from __future__ import annotations

import hmac
import json
import os
from typing import Callable, Iterable

SECRET_HEADER = "X-Inflab-Sandbox-Secret"
HEALTH_PATH = "/inflab-sandbox/health"
REFUSED = (
    "This is the inflab sandbox: it answers only the lab's own clients "
    "(requests carrying the secret in its state directory)."
)
ERROR_CODE = "AccessDeniedException"

_ENVIRON_KEY = "HTTP_" + SECRET_HEADER.upper().replace("-", "_")


def _refusal(environ: dict) -> tuple[bytes, str]:
    """The refusal in the form the caller reads errors in: JSON for AWS's JSON protocols,
    otherwise an AWS XML error document (which is also what a person with curl sees)."""
    if "json" in environ.get("CONTENT_TYPE", ""):
        return json.dumps({"__type": ERROR_CODE, "message": REFUSED}).encode(), "application/json"
    body = (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<ErrorResponse><Error><Code>{ERROR_CODE}</Code>'
        f"<Message>{REFUSED}</Message></Error></ErrorResponse>\n"
    )
    return body.encode(), "text/xml"


class Gate:
    def __init__(self, app: Callable, secret: str):
        self.app = app
        self._secret = secret.encode("ascii")

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        if environ.get("PATH_INFO", "") == HEALTH_PATH:
            body = json.dumps({"ok": True, "pid": os.getpid()}).encode()
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]
        # WSGI hands header values over as latin-1 decoded text: this gets the bytes back.
        given = environ.get(_ENVIRON_KEY, "").encode("latin-1")
        if not hmac.compare_digest(given, self._secret):
            body, content_type = _refusal(environ)
            start_response(
                "403 Forbidden",
                [("Content-Type", content_type), ("Content-Length", str(len(body))), ("x-amzn-ErrorType", ERROR_CODE)],
            )
            return [body]
        return self.app(environ, start_response)
