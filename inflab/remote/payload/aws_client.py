"""The AWS client of the payload scripts that call AWS from the host (the SageMaker package upload,
the load on a SageMaker endpoint): botocore, signed with the host's own credentials.

On an instance the scripts run in the session's image, whose AWS CLI brings botocore; the
credentials are the instance role's (botocore's standard chain reads them from the instance
metadata service, IMDSv2). Nothing here writes or prints a credential.

Where the host reaches AWS some other way, whoever starts the script calls :func:`configure` first,
in the same process: the endpoint to call, headers every request carries and the key to sign with
(the sandbox's stand-in for the instance role). The defaults are AWS's own.

Standard library only at import time; botocore is imported when a client is made.
"""

from __future__ import annotations

from typing import Any

_settings: dict[str, Any] = {"endpoint_url": None, "headers": {}, "credentials": None}


def configure(
    *,
    endpoint_url: str | None = None,
    headers: dict[str, str] | None = None,
    credentials: tuple[str, str] | None = None,
) -> None:
    """Where the clients made from now on go, what every request carries and what signs them."""
    _settings.update(endpoint_url=endpoint_url, headers=dict(headers or {}), credentials=credentials)


def client(service: str, region: str, *, timeout: float = 60.0, pool: int = 10, retries: int = 2):
    """A botocore client for ``service`` in ``region``: thread-safe, up to ``pool`` connections kept
    alive, ``retries`` attempts in all (standard mode) and ``timeout`` seconds to read an answer."""
    import botocore.session
    from botocore.config import Config

    session = botocore.session.get_session()
    key = _settings["credentials"]
    if key is not None:
        session.set_credentials(*key)
    config = Config(
        region_name=region,
        max_pool_connections=pool,
        read_timeout=timeout,
        connect_timeout=10,
        retries={"mode": "standard", "total_max_attempts": max(1, retries)},
        user_agent_extra="inflab",
    )
    made = session.create_client(service, region_name=region, endpoint_url=_settings["endpoint_url"], config=config)
    headers = dict(_settings["headers"])
    if headers:

        def add(request, **_: Any) -> None:  # after signing, as the request goes out
            request.headers.update(headers)

        made.meta.events.register("before-send", add)
    return made
