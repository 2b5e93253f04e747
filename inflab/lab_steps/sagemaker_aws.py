"""What the SageMaker exercise's steps share: their records, the execution role, SageMaker's
resources looked up by name, and taking them all down.

The records (frozen, plain data in and out) travel between the steps under their own session keys:
the model data uploaded (:class:`Package`), the endpoint made (:class:`Endpoint`). The endpoint and
its configuration, the models (one per precision, each a production variant of the endpoint), the
execution role and the instance role's permission to invoke the endpoint go in :func:`teardown`,
which the delete step, terminate and cleanup use.
"""

from __future__ import annotations

import json
import shlex
import time

from botocore.exceptions import ClientError

from .. import names
from ..aws import error_code, error_message, inventory, tag_dict
from .base import StepContext, StepError
from .iam_roles import ensure_role as make_role, remove_role
from .image import image_uri, kind
from .records import Endpoint, Package
from .results_bucket import remove_prefix
from .sweep_grid import account, bucket

INVOKE_POLICY = "inflab-sagemaker-invoke"  # on the instance role: the load generator may invoke the endpoint
ROLE_POLICY = "inflab-sagemaker"  # the execution role's one inline policy
DELETE_TIMEOUT_S = 900


def disabled(ctx: StepContext) -> str:
    """Why the exercise's steps are skipped ("" when they are not)."""
    return "" if ctx.config.sagemaker.enabled else "[sagemaker] enabled = false in this session's config"


def aws_payload_command(ctx: StepContext, job: str, script: str, args: list[str]) -> str:
    """A payload script that calls AWS from the host with the host's credentials (the runtime says how)."""
    prefix = ctx.runtime.aws_payload_prefix(session=ctx.name, job=job, image_uri=image_uri(ctx), kind=kind(ctx))
    return prefix + script + '" ' + " ".join(shlex.quote(a) for a in args)


def package(ctx: StepContext) -> Package | None:
    return ctx.load(Package)


def endpoint_record(ctx: StepContext) -> Endpoint | None:
    return ctx.load(Endpoint)


def data_prefix(ctx: StepContext) -> str:
    """``SESSION/sagemaker/``: the model data's prefix in the session's bucket."""
    return f"{ctx.name}/{names.SAGEMAKER_PREFIX}/"


# -- looking things up ----------------------------------------------------------------------------
def _missing(e: ClientError) -> bool:
    """SageMaker's answer for a name that does not exist (ValidationException "Could not find …")."""
    return error_code(e) in ("ValidationException", "ResourceNotFound") and (
        "could not find" in error_message(e).lower() or "not found" in error_message(e).lower()
    )


def describe_endpoint(ctx: StepContext, name: str) -> dict | None:
    try:
        return ctx.aws.client("sagemaker").describe_endpoint(EndpointName=name)
    except ClientError as e:
        if _missing(e):
            return None
        raise


def describe_model(ctx: StepContext, name: str) -> dict | None:
    try:
        return ctx.aws.client("sagemaker").describe_model(ModelName=name)
    except ClientError as e:
        if _missing(e):
            return None
        raise


def config_exists(ctx: StepContext, name: str) -> bool:
    """Is there an endpoint configuration of exactly this name? (Listed: its settings are the endpoint's
    concern, and the lab compares its own record, not SageMaker's copy.)"""
    pages = ctx.aws.client("sagemaker").get_paginator("list_endpoint_configs").paginate(NameContains=name)
    return any(c["EndpointConfigName"] == name for page in pages for c in page["EndpointConfigs"])


def _ours(ctx: StepContext, arn: str) -> bool:
    sm = ctx.aws.client("sagemaker")
    return tag_dict(sm.list_tags(ResourceArn=arn).get("Tags")).get(names.TAG_SESSION) == ctx.name


def session_configs(ctx: StepContext) -> list[str]:
    """The session's endpoint configurations: named ``inflab-SESSION-<n>`` and tagged for it."""
    sm = ctx.aws.client("sagemaker")
    start = names.sagemaker_endpoint_config(ctx.name, 0)[:-1]
    found = []
    for page in sm.get_paginator("list_endpoint_configs").paginate(NameContains=start):
        for c in page["EndpointConfigs"]:
            rest = c["EndpointConfigName"].removeprefix(start)
            if c["EndpointConfigName"].startswith(start) and rest.isdigit() and _ours(ctx, c["EndpointConfigArn"]):
                found.append(c["EndpointConfigName"])
    return found


def wait_gone(ctx: StepContext, name: str, timeout: float = DELETE_TIMEOUT_S) -> None:
    """Until DescribeEndpoint no longer finds ``name`` (Deleting takes a minute or two on AWS)."""
    t0 = time.monotonic()
    while (d := describe_endpoint(ctx, name)) is not None:
        waited = time.monotonic() - t0
        if waited > timeout:
            raise StepError(f"Endpoint {name} is still {d.get('EndpointStatus')} after {timeout:.0f} s")
        ctx.progress(None, f"Endpoint {name}: {d.get('EndpointStatus')}… {waited:.0f} s")
        ctx.sleep(min(ctx.runtime.sagemaker_poll_s, 10.0))


# -- the execution role ----------------------------------------------------------------------------
def role_policy(ctx: StepContext, bucket_name: str, acct: str) -> dict:
    """What SageMaker may do as the session's execution role: pull the session's image, read its model
    data, write the endpoint's logs and metrics — nothing else (SageMaker's CreateModel guide lists
    these actions)."""
    group = names.sagemaker_log_group(names.sagemaker_endpoint(ctx.name))
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ModelData",
                "Effect": "Allow",
                "Action": "s3:GetObject",
                "Resource": f"arn:aws:s3:::{bucket_name}/{data_prefix(ctx)}*",
            },
            {
                "Sid": "Image",
                "Effect": "Allow",
                "Action": ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
                "Resource": f"arn:aws:ecr:{ctx.region}:{acct}:repository/{names.repository(ctx.name)}",
            },
            {"Sid": "RegistryToken", "Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"},
            {
                "Sid": "Logs",
                "Effect": "Allow",
                "Action": [
                    "logs:CreateLogGroup",
                    "logs:CreateLogStream",
                    "logs:DescribeLogStreams",
                    "logs:PutLogEvents",
                ],
                "Resource": [
                    f"arn:aws:logs:{ctx.region}:{acct}:log-group:{group}",
                    f"arn:aws:logs:{ctx.region}:{acct}:log-group:{group}:*",
                ],
            },
            {
                "Sid": "Metrics",
                "Effect": "Allow",
                "Action": "cloudwatch:PutMetricData",
                "Resource": "*",
                "Condition": {"StringLike": {"cloudwatch:namespace": ["AWS/SageMaker", "/aws/sagemaker/Endpoints"]}},
            },
        ],
    }


def invoke_policy(ctx: StepContext, acct: str) -> dict:
    """The instance role's: invoke the session's endpoint (the load test runs on the instance)."""
    arn = f"arn:aws:sagemaker:{ctx.region}:{acct}:endpoint/{names.sagemaker_endpoint(ctx.name)}"
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "InvokeTheSessionsEndpoint",
                "Effect": "Allow",
                "Action": "sagemaker:InvokeEndpoint",
                "Resource": arn,
            }
        ],
    }


def ensure_role(ctx: StepContext) -> str:
    """The execution role (made if missing, its policy put each time); returns its ARN."""
    name = names.sagemaker_role(ctx.name)
    arn = make_role(ctx, name, "sagemaker.amazonaws.com", purpose="SageMaker execution role")
    iam = ctx.aws.client("iam")
    iam.put_role_policy(
        RoleName=name, PolicyName=ROLE_POLICY, PolicyDocument=json.dumps(role_policy(ctx, bucket(ctx), account(ctx)))
    )
    return arn


def allow_invoke(ctx: StepContext) -> bool:
    """Let the instance role invoke the session's endpoint; False when the session has no instance role."""
    try:
        ctx.aws.client("iam").put_role_policy(
            RoleName=names.instance_role(ctx.name),
            PolicyName=INVOKE_POLICY,
            PolicyDocument=json.dumps(invoke_policy(ctx, account(ctx))),
        )
        return True
    except ClientError as e:
        if error_code(e) == "NoSuchEntity":
            return False
        raise


def _disallow_invoke(ctx: StepContext) -> None:
    """Take the invoke permission off the instance role, when there is the role. IAM authorizes a call on a
    role by its ARN, path included; a role that does not exist has no path, so DeleteRolePolicy on it is
    AccessDenied under the lab's policy (its roles live under /inflab/), not NoSuchEntity: look first."""
    iam = ctx.aws.client("iam")
    role = names.instance_role(ctx.name)
    try:
        iam.get_role(RoleName=role)
        iam.delete_role_policy(RoleName=role, PolicyName=INVOKE_POLICY)
    except ClientError as e:
        if error_code(e) != "NoSuchEntity":
            raise


# -- taking it down --------------------------------------------------------------------------------
def remove_endpoint(ctx: StepContext, name: str) -> bool:
    """Delete endpoint ``name`` if it is there and this session's, and wait until it is gone; True if it was."""
    found = describe_endpoint(ctx, name)
    if found is None:
        return False
    if not _ours(ctx, found["EndpointArn"]):
        ctx.log(f"An endpoint named {name} exists but is not tagged for this session: left alone")
        return False
    if found.get("EndpointStatus") != "Deleting":
        ctx.aws.client("sagemaker").delete_endpoint(EndpointName=name)
    wait_gone(ctx, name)
    ctx.log(f"Deleted endpoint {name} (its instances are gone: nothing of it is billed any more)")
    return True


def remove_config(ctx: StepContext, name: str) -> None:
    if config_exists(ctx, name):
        ctx.aws.client("sagemaker").delete_endpoint_config(EndpointConfigName=name)
        ctx.log(f"Deleted endpoint configuration {name}")


def remove_model(ctx: StepContext, name: str) -> None:
    found = describe_model(ctx, name)
    if found is not None and _ours(ctx, found["ModelArn"]):
        ctx.aws.client("sagemaker").delete_model(ModelName=name)
        ctx.log(f"Deleted model {name}")


def leftovers(ctx: StepContext) -> list[str]:
    """What of the exercise is still in AWS (endpoint, configurations, models), in words."""
    out = []
    if describe_endpoint(ctx, names.sagemaker_endpoint(ctx.name)) is not None:
        out.append(f"endpoint {names.sagemaker_endpoint(ctx.name)}")
    out += [f"endpoint configuration {c}" for c in session_configs(ctx)]
    rec = endpoint_record(ctx)
    for m in rec.models if rec else ():
        if describe_model(ctx, m) is not None:
            out.append(f"model {m}")
    return out


def teardown(ctx: StepContext, *, data: bool) -> None:
    """The endpoint (waited for), its configurations, the models, the execution role, the instance role's
    permission to invoke it and the endpoint's log group; ``data``: the model data under
    ``SESSION/sagemaker/`` too."""
    rec = endpoint_record(ctx)
    remove_endpoint(ctx, names.sagemaker_endpoint(ctx.name))
    for c in dict.fromkeys([*session_configs(ctx), *([rec.config] if rec else [])]):
        remove_config(ctx, c)
    precisions = {*names.SAGEMAKER_PRECISIONS, *(rec.variants if rec else ())}
    for m in dict.fromkeys([*(rec.models if rec else ()), *(names.sagemaker_model(ctx.name, p) for p in precisions)]):
        remove_model(ctx, m)
    remove_role(ctx, names.sagemaker_role(ctx.name))
    _disallow_invoke(ctx)
    group = names.sagemaker_log_group(names.sagemaker_endpoint(ctx.name))
    if inventory.log_group_named(ctx.aws, group) is not None:  # SageMaker made it; by exact name, never another's
        ctx.aws.client("logs").delete_log_group(logGroupName=group)
        ctx.log(f"Deleted log group {group} (the endpoint's container logs)")
    for what in ("sagemaker:endpoint", "sagemaker:endpoint-config", "sagemaker:model"):
        ctx.store.mark_deleted(ctx.name, what)
    ctx.store.mark_deleted(ctx.name, "iam:role", names.sagemaker_role(ctx.name))
    if data:
        name = bucket(ctx)
        n = remove_prefix(ctx, name, data_prefix(ctx))
        if n:
            ctx.log(f"Deleted the model data s3://{name}/{data_prefix(ctx)} ({n} object(s))")
