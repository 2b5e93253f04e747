"""boto3 access for the lab: one Session per thread, adaptive retries, tags, the sandbox seam.

Nothing here imports Textual. Credentials come from the standard chain (environment,
profiles, SSO, instance roles), or are handed over as a :class:`Credentials` record: in the
sandbox, the emulated IAM user the host runtime names (keys the emulator made, never real
ones), else fixed placeholders the emulator accepts when it checks no IAM policy. The
sandbox endpoint answers only requests that carry its daemon's secret: the host runtime
hands it over as ``headers``, sent with every request to that endpoint.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from ..names import TAG_LAB, TAG_SESSION  # noqa: F401 (the tags are the names module's)

USER_AGENT = "inflab/0.1"


def tags(session: str, track: str, **extra: str) -> list[dict[str, str]]:
    out = [{"Key": TAG_SESSION, "Value": session}, {"Key": TAG_LAB, "Value": track}]
    out += [{"Key": k, "Value": v} for k, v in extra.items()]
    return out


def tag_dict(tag_list: list[dict[str, str]] | None) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in (tag_list or [])}


def session_filter(session: str) -> list[dict[str, Any]]:
    return [{"Name": f"tag:{TAG_SESSION}", "Values": [session]}]


@dataclass(frozen=True)
class Credentials:
    """An access key to sign with instead of the standard credential chain."""

    access_key_id: str
    secret_access_key: str = field(repr=False)


#: what the sandbox's emulator accepts when it checks no IAM policy: placeholders, not credentials
SANDBOX_PLACEHOLDER = Credentials("inflab-sandbox", "inflab-sandbox")


def _add_headers(headers: Mapping[str, str]):
    def add(request, **_: Any) -> None:
        request.headers.update(headers)

    return add


@dataclass
class Aws:
    """Per-thread boto3 clients for one region (and, in the sandbox, one endpoint).

    ``headers``: extra HTTP headers on every request (the sandbox's secret; none on AWS).
    ``credentials``: sign with this key instead of the standard chain (the sandbox's emulated users);
    left out on a sandbox endpoint, the placeholders.
    """

    region: str
    profile: str | None = None
    endpoint_url: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    credentials: Credentials | None = field(default=None, repr=False)
    #: act as this role (an instructor reading a participant's account); its credentials stay in
    #: memory and are renewed before they expire
    role_arn: str | None = None
    external_id: str | None = field(default=None, repr=False)
    #: False: one boto3 session and one client per service for every thread (clients are thread-safe;
    #: made under a lock) — for readers that visit many accounts from a pool of threads, where a
    #: session per thread and account would be made over and over
    per_thread: bool = True
    _local: threading.local = field(default_factory=threading.local, repr=False)
    _shared: Any = field(default=None, repr=False)
    _made: threading.RLock = field(default_factory=threading.RLock, repr=False)

    def __post_init__(self) -> None:
        if not self.per_thread:
            self._local = self._shared = SimpleNamespace()  # one namespace for every thread

    @property
    def sandbox(self) -> bool:
        return self.endpoint_url is not None

    def _session(self):
        if self._shared is not None:
            with self._made:
                return self._make_session()
        return self._make_session()

    def _make_session(self):
        s = getattr(self._local, "session", None)
        if s is None:
            import boto3

            key = self.credentials or (SANDBOX_PLACEHOLDER if self.sandbox else None)
            if key is not None:
                s = boto3.session.Session(
                    aws_access_key_id=key.access_key_id,
                    aws_secret_access_key=key.secret_access_key,
                    region_name=self.region,
                )
            else:
                s = boto3.session.Session(profile_name=self.profile or None, region_name=self.region)
            if self.role_arn:
                s = self._assumed(s)
            self._local.session = s
            self._local.clients = {}
        return s

    def _assumed(self, source):
        """A session acting as ``role_arn``: botocore's assume-role fetcher, credentials refreshed
        before they expire, asked for only when a first call needs them."""
        import boto3
        import botocore.session
        from botocore.credentials import AssumeRoleCredentialFetcher, CredentialProvider, DeferredRefreshableCredentials

        def create_client(service, **kwargs):
            client = source.client(service, endpoint_url=self.endpoint_url, **kwargs)
            if self.headers:
                client.meta.events.register("before-send", _add_headers(self.headers))
            return client

        extra = {"RoleSessionName": "inflab-instructor"}
        if self.external_id:
            extra["ExternalId"] = self.external_id
        fetcher = AssumeRoleCredentialFetcher(create_client, source.get_credentials(), self.role_arn, extra_args=extra)

        class AssumedRole(CredentialProvider):
            METHOD = "inflab-assume-role"

            def load(self):
                return DeferredRefreshableCredentials(fetcher.fetch_credentials, self.METHOD)

        core = botocore.session.Session()
        core.get_component("credential_provider").insert_before("env", AssumedRole())
        return boto3.session.Session(botocore_session=core, region_name=self.region)

    def client(self, service: str, *, quick: bool = False):
        """A client for ``service`` (adaptive retries). ``quick``: few retries and short timeouts, for
        calls that must never hold up the work (the progress beacon)."""
        s = self._session()
        clients = self._local.clients
        key = (service, quick)
        if key in clients:
            return clients[key]
        with self._made:
            return self._make_client(s, clients, key)

    def _make_client(self, s, clients: dict, key: tuple):
        service, quick = key
        if key not in clients:
            from botocore.config import Config

            cfg = Config(
                retries={"mode": "standard", "max_attempts": 2} if quick else {"mode": "adaptive", "max_attempts": 8},
                user_agent_extra=USER_AGENT,
                connect_timeout=3 if quick else 10,
                read_timeout=5 if quick else 60,
            )
            client = s.client(service, endpoint_url=self.endpoint_url, config=cfg)
            if self.headers:
                # After signing, just before the request goes out (botocore's documented hook).
                client.meta.events.register("before-send", _add_headers(self.headers))
            clients[key] = client
        return clients[key]


def error_code(exc: BaseException) -> str:
    resp = getattr(exc, "response", None) or {}
    return resp.get("Error", {}).get("Code", "")


def error_message(exc: BaseException) -> str:
    resp = getattr(exc, "response", None) or {}
    return resp.get("Error", {}).get("Message", str(exc))
