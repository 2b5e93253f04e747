"""The lab's IAM roles: making one (trusted by one service, under the lab's path) and taking one down
(its instance profile, policies and the role itself)."""

from __future__ import annotations

import json

from botocore.exceptions import ClientError

from .. import names
from ..aws import error_code
from .base import StepContext


def trust(service: str) -> str:
    """The trust policy of a role that ``service`` (e.g. ``ec2.amazonaws.com``) may assume."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}],
        }
    )


def ensure_role(ctx: StepContext, name: str, service: str, *, purpose: str) -> str:
    """Role ``name`` trusted by ``service`` under the lab's IAM path: made if missing (its intent
    recorded first, so a kill leaves it findable), then waited for until IAM has it; its ARN."""
    iam = ctx.aws.client("iam")
    try:
        arn = iam.get_role(RoleName=name)["Role"]["Arn"]
    except ClientError as e:
        if error_code(e) != "NoSuchEntity":
            raise
        with ctx.creating("iam:role", name) as made:
            arn = iam.create_role(
                RoleName=name,
                Path=names.IAM_PATH,
                AssumeRolePolicyDocument=trust(service),
                Description=f"inflab {purpose} for session {ctx.name}",
                Tags=ctx.tags(),
            )["Role"]["Arn"]
            made(arn)
        ctx.log(f"Created {purpose} {name} (trusted by {service})")
    iam.get_waiter("role_exists").wait(RoleName=name, WaiterConfig={"Delay": 2, "MaxAttempts": 30})
    return arn


def remove_role(ctx: StepContext, name: str) -> None:
    """Delete role ``name`` and the instance profile of the same name (safe when either is gone):
    the profile lets go of its roles, the role of its policies, then each is deleted."""
    iam = ctx.aws.client("iam")
    try:
        prof = iam.get_instance_profile(InstanceProfileName=name)["InstanceProfile"]
    except ClientError as e:
        if error_code(e) != "NoSuchEntity":
            raise
        prof = None
    if prof:
        for r in prof.get("Roles", []):
            iam.remove_role_from_instance_profile(InstanceProfileName=name, RoleName=r["RoleName"])
        iam.delete_instance_profile(InstanceProfileName=name)
        ctx.log(f"Deleted instance profile {name}")
    try:
        iam.get_role(RoleName=name)
    except ClientError as e:
        if error_code(e) == "NoSuchEntity":
            return
        raise
    for other in iam.list_instance_profiles_for_role(RoleName=name)["InstanceProfiles"]:
        iam.remove_role_from_instance_profile(InstanceProfileName=other["InstanceProfileName"], RoleName=name)
    for p in iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]:
        iam.detach_role_policy(RoleName=name, PolicyArn=p["PolicyArn"])
    for p in iam.list_role_policies(RoleName=name)["PolicyNames"]:
        iam.delete_role_policy(RoleName=name, PolicyName=p)
    iam.delete_role(RoleName=name)
    ctx.log(f"Deleted role {name}")
