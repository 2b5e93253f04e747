"""The session's container image: which kind, what it is built from, its hash, tag and URI.

Shared by the container steps (build, push), the model steps (what runs a payload) and the sweep
(the image its jobs run). The tag names a hash of everything the image is built from — its
definition, requirements, source and the payload it bakes in — so a changed payload is a new tag.
"""

from __future__ import annotations

import base64
import hashlib
import re
from importlib import resources

from .. import names
from ..runtime.base import ImagePlan
from .base import StepContext, StepError
from .records import Repository
from .remote_job import payload_files


def kind(ctx: StepContext) -> str:
    return ctx.runtime.container_kind(ctx.config)


def container_files(k: str) -> dict[str, bytes]:
    """The build context's definition files for container kind ``k``."""
    root = resources.files("inflab.assets").joinpath("container")
    return {
        "Dockerfile": root.joinpath(k, "Dockerfile").read_bytes(),
        "Dockerfile.prebuilt": root.joinpath("Dockerfile.prebuilt").read_bytes(),
        "requirements.txt": root.joinpath(k, "requirements.txt").read_bytes(),
    }


def base_image(k: str) -> str:
    """The image a kind's Dockerfile starts from (its ``ARG BASE_IMAGE=`` default)."""
    text = container_files(k)["Dockerfile"].decode()
    m = re.search(r"^ARG\s+BASE_IMAGE=(\S+)", text, re.M)
    return m.group(1) if m else ""


def source(ctx: StepContext, k: str | None = None) -> str:
    """build or prebuilt; the CPU image is always built (there is no AWS CPU inference image to start from)."""
    return "build" if (k or kind(ctx)) == "cpu" else ctx.config["container"]["source"]


def image_hash(ctx: StepContext, k: str | None = None) -> str:
    """Changes when what the image is built from changes (definition, requirements, source, the payload it bakes in)."""
    k = k or kind(ctx)
    h = hashlib.sha256(source(ctx, k).encode())
    files = {**container_files(k), **{f"payload/{n}": d for n, d in payload_files().items()}}
    for name, data in sorted(files.items()):
        h.update(name.encode() + b"\0" + data + b"\0")
    return h.hexdigest()[:16]


def image_tag(ctx: StepContext, k: str | None = None) -> str:
    """``<kind>-<hash>``: the tag names what the image was built from, payload included, so a
    Batch job never runs an image with older code under a familiar name."""
    return f"{k or kind(ctx)}-{image_hash(ctx, k)}"


def repository_uri(ctx: StepContext) -> str:
    repo = ctx.load(Repository)
    return repo.uri if repo else f"<account>.dkr.ecr.{ctx.region}.amazonaws.com/{names.repository(ctx.name)}"


def image_uri(ctx: StepContext, k: str | None = None) -> str:
    return f"{repository_uri(ctx)}:{image_tag(ctx, k)}"


def image_plan(ctx: StepContext) -> ImagePlan:
    k = kind(ctx)
    return ctx.runtime.image_plan(
        uri=image_uri(ctx), digest=image_hash(ctx), kind=k, source=source(ctx), base_image=base_image(k)
    )


def build_commands(ctx: StepContext) -> list[str]:
    """The build job's script, line by line (what the tests read)."""
    return image_plan(ctx).script.split("\n")


def ecr_password(ecr) -> tuple[str, str]:
    """(registry host, password) from ECR's authorization token."""
    data = ecr.get_authorization_token()["authorizationData"][0]
    user, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
    if user != "AWS" or not password:
        raise StepError("ECR returned an authorization token in an unexpected form")
    return data["proxyEndpoint"].removeprefix("https://").rstrip("/"), password
