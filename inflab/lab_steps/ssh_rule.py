"""The rule that lets SSH in: tcp/22 from your address only, in the session's security group.

The security-group step makes the group and the rule; the connect step moves the rule when your
public address changed since (a new network), before it connects.
"""

from __future__ import annotations

from .. import names
from ..aws import inventory
from .base import StepContext
from .records import SshCidr


def caller_cidr(ctx: StepContext) -> str:
    """Where SSH may come from: the config's CIDR, else what the runtime says (your public IP /32)."""
    return ctx.config["instance"]["ssh_cidr"] or ctx.runtime.caller_cidr()


def find_group(ctx: StepContext) -> dict | None:
    groups = [
        g for g in inventory.security_groups(ctx.aws, ctx.name) if g["GroupName"] == names.ssh_security_group(ctx.name)
    ]
    return groups[0] if groups else None


def cidrs(group: dict) -> set[str]:
    """The address blocks the group lets in on tcp/22."""
    out = set()
    for perm in group.get("IpPermissions", []):
        if perm.get("IpProtocol") == "tcp" and perm.get("FromPort") == 22 and perm.get("ToPort") == 22:
            out |= {r["CidrIp"] for r in perm.get("IpRanges", [])}
    return out


def current(ctx: StepContext) -> bool:
    """The group exists and lets SSH in from your address, and from nothing else."""
    group = find_group(ctx)
    return bool(group) and cidrs(group) == {caller_cidr(ctx)}


def fit(ctx: StepContext, group: dict) -> None:
    """Let SSH in from your address only: revoke the others, authorize yours."""
    ec2 = ctx.aws.client("ec2")
    cidr = caller_cidr(ctx)
    ctx.save(SshCidr(value=cidr))
    gid = group["GroupId"]
    stale = cidrs(group) - {cidr}
    if stale:
        ec2.revoke_security_group_ingress(
            GroupId=gid,
            IpPermissions=[
                {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": c} for c in sorted(stale)]}
            ],
        )
        ctx.log(f"Removed SSH access from {', '.join(sorted(stale))} (no longer your address)")
    if cidr not in cidrs(group):
        ec2.authorize_security_group_ingress(
            GroupId=gid,
            IpPermissions=[
                {
                    "IpProtocol": "tcp",
                    "FromPort": 22,
                    "ToPort": 22,
                    "IpRanges": [{"CidrIp": cidr, "Description": "inflab: SSH from you"}],
                }
            ],
        )
        ctx.log(f"Allowed SSH (tcp/22) from {cidr} only")
