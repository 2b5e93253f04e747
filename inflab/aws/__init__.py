"""boto3 access for the lab: one Session per thread, adaptive retries, tags, the sandbox seam.

Nothing here imports Textual. Credentials come from the standard chain (environment,
profiles, SSO, instance roles); in the sandbox they are fixed dummy values that the
emulator accepts, never real keys. The sandbox endpoint answers only requests that carry
its daemon's secret: the host runtime hands it over as ``headers``, sent with every request
to that endpoint.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

TAG_SESSION = "inflab:session"
TAG_LAB = "inflab:lab"
USER_AGENT = "inflab/0.1"


def tags(session: str, track: str, **extra: str) -> list[dict[str, str]]:
    out = [{"Key": TAG_SESSION, "Value": session}, {"Key": TAG_LAB, "Value": track}]
    out += [{"Key": k, "Value": v} for k, v in extra.items()]
    return out


def tag_dict(tag_list: list[dict[str, str]] | None) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in (tag_list or [])}


def session_filter(session: str) -> list[dict[str, Any]]:
    return [{"Name": f"tag:{TAG_SESSION}", "Values": [session]}]


def _add_headers(headers: Mapping[str, str]):
    def add(request, **_: Any) -> None:
        request.headers.update(headers)

    return add


@dataclass
class Aws:
    """Per-thread boto3 clients for one region (and, in the sandbox, one endpoint).

    ``headers``: extra HTTP headers on every request (the sandbox's secret; none on AWS).
    """

    region: str
    profile: str | None = None
    endpoint_url: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    _local: threading.local = field(default_factory=threading.local, repr=False)

    @property
    def sandbox(self) -> bool:
        return self.endpoint_url is not None

    def _session(self):
        s = getattr(self._local, "session", None)
        if s is None:
            import boto3

            if self.sandbox:
                # The emulator accepts any key; these are placeholders, not credentials.
                s = boto3.session.Session(
                    aws_access_key_id="inflab-sandbox",
                    aws_secret_access_key="inflab-sandbox",
                    region_name=self.region,
                )
            else:
                s = boto3.session.Session(profile_name=self.profile or None, region_name=self.region)
            self._local.session = s
            self._local.clients = {}
        return s

    def client(self, service: str):
        s = self._session()
        clients = self._local.clients
        if service not in clients:
            from botocore.config import Config

            cfg = Config(
                retries={"mode": "adaptive", "max_attempts": 8},
                user_agent_extra=USER_AGENT,
                connect_timeout=10,
                read_timeout=60,
            )
            client = s.client(service, endpoint_url=self.endpoint_url, config=cfg)
            if self.headers:
                # After signing, just before the request goes out (botocore's documented hook).
                client.meta.events.register("before-send", _add_headers(self.headers))
            clients[service] = client
        return clients[service]


def error_code(exc: BaseException) -> str:
    resp = getattr(exc, "response", None) or {}
    return resp.get("Error", {}).get("Code", "")


def error_message(exc: BaseException) -> str:
    resp = getattr(exc, "response", None) or {}
    return resp.get("Error", {}).get("Message", str(exc))
