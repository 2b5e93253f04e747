"""The progress beacon: a small JSON document per session in SSM Parameter Store.

``/inflab/sessions/<session>`` in the session's own account and region, tagged like everything
else, rewritten at each step transition, removed by cleanup. The instructor reads a room's
beacons with one ``GetParametersByPath`` per account. It holds progress only — step states and
times, the last error line, instance ids and launch times, the names the session's resources
follow from — never a key, a token or a credential.
"""

from __future__ import annotations

import json
from typing import Any

from . import Aws, error_code

PREFIX = "/inflab/sessions/"
MAX_BYTES = 4096  # a standard-tier parameter's value
SCHEMA = 1


def path(session: str) -> str:
    return PREFIX + session


def encode(doc: dict[str, Any]) -> str:
    """The document as compact JSON of at most MAX_BYTES: the history is cut (oldest steps first), then the
    error line, rather than fail."""
    doc = dict(doc)
    text = json.dumps(doc, separators=(",", ":"))
    while len(text.encode()) > MAX_BYTES and doc.get("history"):
        doc["history"] = dict(list(doc["history"].items())[1:])
        doc["cut"] = True
        text = json.dumps(doc, separators=(",", ":"))
    if len(text.encode()) > MAX_BYTES:
        doc["error"] = (doc.get("error") or "")[:200]
        text = json.dumps(doc, separators=(",", ":"))
    return text


def publish(aws: Aws, session: str, doc: dict[str, Any], tags: list[dict[str, str]], *, tagged: bool) -> None:
    """Write the beacon. ``tagged``: it exists with its tags already (an overwrite cannot carry tags)."""
    ssm = aws.client("ssm", quick=True)
    value = encode(doc)
    if not tagged:
        try:
            ssm.put_parameter(Name=path(session), Value=value, Type="String", Tags=tags,
                              Description="inflab session progress (no secrets)")
            return
        except Exception as e:
            if error_code(e) != "ParameterAlreadyExists":
                raise
            ssm.add_tags_to_resource(ResourceType="Parameter", ResourceId=path(session), Tags=tags)
    ssm.put_parameter(Name=path(session), Value=value, Type="String", Overwrite=True)


def decode(text: str) -> dict[str, Any] | None:
    """A beacon's document, or None when it is not one of ours."""
    try:
        doc = json.loads(text)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) and isinstance(doc.get("session"), str) else None


def read_all(aws: Aws) -> dict[str, dict[str, Any]]:
    """Every session's beacon in the account and region, by session name."""
    out = {}
    for page in aws.client("ssm").get_paginator("get_parameters_by_path").paginate(Path=PREFIX.rstrip("/"), Recursive=True):
        for p in page["Parameters"]:
            doc = decode(p["Value"])
            if doc is not None and p["Name"] == path(doc["session"]):
                out[doc["session"]] = doc
    return out


def read(aws: Aws, session: str) -> dict[str, Any] | None:
    try:
        value = aws.client("ssm").get_parameter(Name=path(session))["Parameter"]["Value"]
    except Exception as e:
        if error_code(e) == "ParameterNotFound":
            return None
        raise
    return decode(value)


def delete(aws: Aws, session: str) -> bool:
    """Remove the beacon; True if there was one."""
    try:
        aws.client("ssm").delete_parameter(Name=path(session))
        return True
    except Exception as e:
        if error_code(e) == "ParameterNotFound":
            return False
        raise
