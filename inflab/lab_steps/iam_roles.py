"""The lab's IAM roles: taking one down (its instance profile, policies and the role itself)."""

from __future__ import annotations

from botocore.exceptions import ClientError

from ..aws import error_code
from .base import StepContext


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
