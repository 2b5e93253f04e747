"""boto3 access for the lab: one Session per thread, adaptive retries, tags, the sandbox seam.

Nothing here imports Textual. Credentials come from the standard chain (environment,
profiles, SSO, instance roles); in the sandbox they are fixed dummy values that the
emulator accepts, never real keys.
"""

from __future__ import annotations

import threading
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


@dataclass
class Aws:
    """Per-thread boto3 clients for one region (and, in the sandbox, one endpoint)."""

    region: str
    profile: str | None = None
    endpoint_url: str | None = None
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
            clients[service] = s.client(service, endpoint_url=self.endpoint_url, config=cfg)
        return clients[service]


def error_code(exc: BaseException) -> str:
    resp = getattr(exc, "response", None) or {}
    return resp.get("Error", {}).get("Code", "")


def error_message(exc: BaseException) -> str:
    resp = getattr(exc, "response", None) or {}
    return resp.get("Error", {}).get("Message", str(exc))
