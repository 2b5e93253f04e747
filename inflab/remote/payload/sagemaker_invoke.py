"""The load generator's SageMaker target: each request is an ``InvokeEndpoint`` call.

``loadgen.py --url sagemaker://ENDPOINT?region=REGION&variant=VARIANT`` sends its load through
SageMaker's runtime API instead of to a server's address: signed with the host's credentials
(:mod:`aws_client`), to the variant named (``TargetVariant``), no retries (a throttled or failed
call is an error of the run, not a hidden second try). Latency is what a client of the endpoint
sees: signing, the call to SageMaker in the region, SageMaker's routing and the container.

Standard library only at import time; botocore is imported when the first client is made.
"""

from __future__ import annotations

import threading
import urllib.parse

try:
    from . import aws_client
except ImportError:  # run as a script on the host
    import aws_client

SCHEME = "sagemaker://"
GENERATOR = "on the instance, in the endpoint's region, through SageMaker's InvokeEndpoint"
POOL = 64  # connections kept alive: the load generator's MAX_THREADS

_clients: dict[tuple[str, float], object] = {}
_lock = threading.Lock()


def target(url: str) -> tuple[str, str, str]:
    """(endpoint, region, variant) of a ``sagemaker://`` URL; ValueError when it names no endpoint or region."""
    if not url.startswith(SCHEME):
        raise ValueError(f"{url!r} is not a {SCHEME}ENDPOINT?region=REGION address")
    u = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qs(u.query)
    endpoint, region = u.netloc, (query.get("region") or [""])[0]
    if not endpoint or not region:
        raise ValueError(f"{url!r} names no endpoint or no region")
    return endpoint, region, (query.get("variant") or [""])[0]


def _runtime(region: str, timeout: float):
    with _lock:  # one client for every thread: botocore's clients are thread-safe
        key = (region, timeout)
        if key not in _clients:
            _clients[key] = aws_client.client("sagemaker-runtime", region, timeout=timeout, pool=POOL, retries=1)
        return _clients[key]


def invoke(endpoint: str, region: str, variant: str, body: bytes, content_type: str, timeout: float) -> str:
    """One ``InvokeEndpoint`` call: "ok", or the kind of failure (the HTTP status and error code)."""
    from botocore.exceptions import BotoCoreError, ClientError

    kwargs = {"EndpointName": endpoint, "Body": body, "ContentType": content_type, "Accept": "application/json"}
    if variant:
        kwargs["TargetVariant"] = variant
    try:
        answer = _runtime(region, timeout).invoke_endpoint(**kwargs)
        answer["Body"].read()
        return "ok"
    except ClientError as e:
        status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "")
        return f"{status} {e.response.get('Error', {}).get('Code', '')}".strip()
    except BotoCoreError as e:
        return type(e).__name__
